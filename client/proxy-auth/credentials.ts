/** User and password for a proxy; never logged, never put in an error message (only `user` is). */
export interface Credentials {
  user: string
  password: string
}

/**
 * Credentials from a proxy URL (`http://DOMAIN%5Cuser:pass@host:port`), else `fallback`
 * (--proxy-user with $PROXY_PASSWORD), else none.
 */
export function credentialsFor (proxy: URL, fallback?: Credentials): Credentials | undefined {
  if (proxy.username !== '') {
    return { user: decodeURIComponent(proxy.username), password: decodeURIComponent(proxy.password) }
  }
  return fallback
}
