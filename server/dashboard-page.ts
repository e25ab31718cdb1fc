import { createHash } from 'node:crypto'

/*
 * The dashboard served at `/`: one self-contained page (no CDN, no external files; tsc does not
 * copy assets, so it lives here as strings). It asks for the token, keeps it in sessionStorage,
 * and streams /events with fetch() and an Authorization header (EventSource cannot send headers,
 * and a token in the URL would end up in proxy logs and browser history). Everything that comes
 * from the server is inserted as text, never as HTML: service names are chosen by clients.
 */

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1c2330; --muted: #5d6778; --line: #dde2ea;
  --accent: #2563eb; --ok: #16a34a; --bad: #dc2626; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
@media (prefers-color-scheme: dark) { :root { --bg: #11151c; --card: #1a202b; --fg: #e6e9ef; --muted: #9aa4b5; --line: #2c3442; --accent: #60a5fa; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header.top { display: flex; align-items: center; gap: .75rem; padding: .75rem 1rem; background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
header.top h1 { font-size: 1.1rem; margin: 0; flex: 1; }
.dot { width: .65rem; height: .65rem; border-radius: 50%; background: var(--muted); display: inline-block; margin-right: .35rem; }
.dot.live { background: var(--ok); } .dot.down { background: var(--bad); }
#status { color: var(--muted); font-size: .9rem; white-space: nowrap; }
main, #login { max-width: 1100px; margin: 0 auto; padding: 1rem; }
button { font: inherit; padding: .35rem .8rem; border-radius: .4rem; border: 1px solid var(--line); background: var(--card); color: var(--fg); cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--bad); }
#login form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; background: var(--card); padding: 1rem; border: 1px solid var(--line); border-radius: .6rem; }
#login input { font: inherit; padding: .4rem .6rem; border-radius: .4rem; border: 1px solid var(--line); flex: 1 1 14rem; min-width: 0; background: var(--bg); color: var(--fg); }
#login-error { color: var(--bad); width: 100%; margin: 0; }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .6rem; margin-bottom: 1rem; }
.stat, .card { background: var(--card); border: 1px solid var(--line); border-radius: .6rem; }
.stat { padding: .6rem .8rem; } .stat b { display: block; font-size: 1.35rem; } .stat span { color: var(--muted); font-size: .85rem; }
.card { padding: .8rem 1rem; margin-bottom: 1rem; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
#chart { width: 100%; height: 180px; display: block; }
#legend { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem 1rem; padding: 0; margin: .5rem 0 0; font-size: .85rem; }
#legend i, .swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .3rem; vertical-align: -1px; }
.service header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .2rem .8rem; }
.service h3 { margin: 0; font-size: 1.05rem; word-break: break-all; }
.service .addr { color: var(--muted); font-family: ui-monospace, monospace; }
.kv { display: flex; flex-wrap: wrap; gap: .2rem 1.2rem; margin: .4rem 0 .6rem; color: var(--muted); font-size: .9rem; }
.kv b { color: var(--fg); font-weight: 600; }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .4rem; border-top: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, monospace; }
.closing { opacity: .5; }
#events { list-style: none; padding: 0; margin: 0; font-size: .88rem; max-height: 16rem; overflow: auto; }
#events li { padding: .25rem 0; border-top: 1px solid var(--line); }
#events time { color: var(--muted); margin-right: .5rem; font-variant-numeric: tabular-nums; }
#events .ev { font-weight: 600; margin-right: .4rem; }
.empty { color: var(--muted); }
[hidden] { display: none !important; }
@media (max-width: 640px) {
  main, #login { padding: .6rem; }
  table, thead, tbody, tr, td { display: block; }
  thead { display: none; }
  tr { border-top: 1px solid var(--line); padding: .3rem 0; }
  td { border: 0; padding: .15rem 0; display: flex; justify-content: space-between; gap: 1rem; text-align: right; }
  td::before { content: attr(data-label); color: var(--muted); text-align: left; }
  td.num { text-align: right; }
}
`

const SCRIPT = `
'use strict'
const $ = (id) => document.getElementById(id)
const KEY = 'reverselb.token'
const WINDOW_MS = 120000
const COLORS = ['#2563eb', '#16a34a', '#ea580c', '#9333ea', '#0891b2', '#db2777', '#ca8a04', '#4b5563']
let token = sessionStorage.getItem(KEY) || ''
let abort = null
let retryMs = 1000
const series = new Map() // service -> [{t, rate, rateIn, rateOut}]
const last = new Map() // service -> {t, bytesIn, bytesOut}
const colorOf = new Map()
let latest = null

function el (tag, props, ...children) {
  const e = document.createElement(tag)
  if (props) for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v; else if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v)
  }
  for (const c of children) e.append(c)
  return e
}
function fmtBytes (n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i]
}
const fmtRate = (n) => fmtBytes(n) + '/s'
function fmtAge (iso) {
  let s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  const d = Math.floor(s / 86400); s -= d * 86400
  const h = Math.floor(s / 3600); s -= h * 3600
  const m = Math.floor(s / 60); s -= m * 60
  return d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + m + 'm' : m > 0 ? m + 'm ' + s + 's' : s + 's'
}
function color (name) {
  if (!colorOf.has(name)) colorOf.set(name, COLORS[colorOf.size % COLORS.length])
  return colorOf.get(name)
}
function setStatus (state, text) {
  $('dot').className = 'dot ' + state
  $('status-text').textContent = text
}

function showLogin (message) {
  $('login').hidden = false
  $('app').hidden = true
  $('logout').hidden = true
  $('login-error').textContent = message || ''
  setStatus('', 'signed out')
  $('token').focus()
}

async function connect () {
  $('login').hidden = true
  $('app').hidden = false
  $('logout').hidden = false
  if (abort) abort.abort()
  const ctrl = new AbortController()
  abort = ctrl
  setStatus('', 'connecting…')
  try {
    const res = await fetch('events', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', signal: ctrl.signal })
    if (res.status === 401) { sessionStorage.removeItem(KEY); token = ''; showLogin('That token was not accepted.'); return }
    if (!res.ok || !res.body) throw new Error('HTTP ' + res.status)
    setStatus('live', 'live')
    retryMs = 1000
    // The server replays its recent events on every (re)connect.
    $('events').replaceChildren()
    $('no-events').hidden = false
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += value.replace(/\\r\\n?/g, '\\n')
      let i
      while ((i = buf.indexOf('\\n\\n')) >= 0) { onBlock(buf.slice(0, i)); buf = buf.slice(i + 2) }
    }
    throw new Error('stream ended')
  } catch (err) {
    if (ctrl !== abort || ctrl.signal.aborted) return
    setStatus('down', 'disconnected, retrying in ' + Math.round(retryMs / 1000) + ' s')
    setTimeout(() => { if (ctrl === abort && token) connect() }, retryMs)
    retryMs = Math.min(retryMs * 2, 30000)
  }
}

function onBlock (block) {
  let event = 'message'
  const data = []
  for (const line of block.split('\\n')) {
    if (line.startsWith(':')) continue
    const c = line.indexOf(':')
    const field = c < 0 ? line : line.slice(0, c)
    const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '')
    if (field === 'event') event = value; else if (field === 'data') data.push(value)
  }
  if (data.length === 0) return
  const msg = JSON.parse(data.join('\\n'))
  if (event === 'snapshot') onSnapshot(msg); else onEvent(msg)
}

function onSnapshot (snap) {
  latest = snap
  const t = Date.parse(snap.time)
  const names = new Set()
  for (const s of snap.services) {
    names.add(s.name)
    const prev = last.get(s.name)
    let rateIn = 0, rateOut = 0
    if (prev && t > prev.t) {
      rateIn = Math.max(0, (s.bytesIn - prev.bytesIn) * 1000 / (t - prev.t))
      rateOut = Math.max(0, (s.bytesOut - prev.bytesOut) * 1000 / (t - prev.t))
    }
    if (!prev || t > prev.t) last.set(s.name, { t, bytesIn: s.bytesIn, bytesOut: s.bytesOut })
    const h = series.get(s.name) || []
    if (!prev || t > prev.t) h.push({ t, rate: rateIn + rateOut, rateIn, rateOut })
    while (h.length && h[0].t < t - WINDOW_MS) h.shift()
    series.set(s.name, h)
  }
  for (const name of [...last.keys()]) if (!names.has(name)) last.delete(name)
  for (const [name, h] of series) {
    if (!names.has(name)) { h.push({ t, rate: 0, rateIn: 0, rateOut: 0 }); while (h.length && h[0].t < t - WINDOW_MS) h.shift() }
    if (!names.has(name) && h.every(p => p.rate === 0)) series.delete(name)
  }
  render(snap, t)
}

function currentRate (name) {
  const h = series.get(name)
  return h && h.length ? h[h.length - 1] : { rate: 0, rateIn: 0, rateOut: 0 }
}

function render (snap, t) {
  const sessions = snap.services.reduce((n, s) => n + s.sessions.length, 0)
  const active = snap.services.reduce((n, s) => n + s.activeConnections, 0)
  const rate = snap.services.reduce((n, s) => n + currentRate(s.name).rate, 0)
  $('stat-services').textContent = String(snap.services.length)
  $('stat-sessions').textContent = String(sessions)
  $('stat-active').textContent = String(active)
  $('stat-rate').textContent = fmtRate(rate)
  $('empty').hidden = snap.services.length > 0
  const box = $('services')
  const cards = new Map([...box.children].map(c => [c.dataset.service, c]))
  let before = box.firstChild
  for (const s of snap.services) {
    let card = cards.get(s.name)
    cards.delete(s.name)
    if (!card) card = serviceCard(s.name)
    if (card !== before) box.insertBefore(card, before); else before = before.nextSibling
    fillService(card, s)
  }
  for (const card of cards.values()) card.remove()
  drawChart(t)
}

function serviceCard (name) {
  const card = el('article', { class: 'card service' })
  card.dataset.service = name
  const head = el('header', null, el('i', { class: 'swatch' }), el('h3', { text: name }), el('span', { class: 'addr' }))
  const kv = el('div', { class: 'kv' })
  const table = el('table', null,
    el('thead', null, el('tr', null, ...['Session', 'Instance', 'Client', 'Connected', 'Active', 'Total', 'In', 'Out', ''].map((h, i) => el('th', { text: h, class: i >= 4 && i <= 7 ? 'num' : '' })))),
    el('tbody'))
  card.append(head, kv, table)
  return card
}

function kvItem (label, value) { return el('span', null, label + ' ', el('b', { text: value })) }

function fillService (card, s) {
  const r = currentRate(s.name)
  card.querySelector('.swatch').style.background = color(s.name)
  card.querySelector('.addr').textContent = s.frontend.address + ':' + s.frontend.port
  const inst = s.instances.map(i => (i.name === '' ? 'default' : i.name) + ' ×' + i.sessions).join(', ')
  card.querySelector('.kv').replaceChildren(
    kvItem('instances', inst || '–'),
    kvItem('connections', s.activeConnections + ' active / ' + s.totalConnections + ' total'),
    kvItem('in', fmtRate(r.rateIn)), kvItem('out', fmtRate(r.rateOut)),
    kvItem('moved', fmtBytes(s.bytesIn) + ' in / ' + fmtBytes(s.bytesOut) + ' out'))
  const tbody = card.querySelector('tbody')
  const rows = new Map([...tbody.children].map(tr => [tr.dataset.session, tr]))
  let before = tbody.firstChild
  for (const x of s.sessions) {
    let tr = rows.get(x.id)
    rows.delete(x.id)
    if (!tr) tr = sessionRow(s.name, x.id)
    if (tr !== before) tbody.insertBefore(tr, before); else before = before.nextSibling
    const cells = tr.children
    cells[1].textContent = x.instance === '' ? 'default' : x.instance
    cells[2].textContent = x.clientAddress
    cells[3].textContent = fmtAge(x.connectedSince)
    cells[3].title = x.connectedSince
    cells[4].textContent = String(x.activeConnections)
    cells[5].textContent = String(x.totalConnections)
    cells[6].textContent = fmtBytes(x.bytesIn)
    cells[7].textContent = fmtBytes(x.bytesOut)
    tr.classList.toggle('closing', x.closing)
  }
  for (const tr of rows.values()) tr.remove()
}

function sessionRow (service, id) {
  const labels = ['Session', 'Instance', 'Client', 'Connected', 'Active', 'Total', 'In', 'Out']
  const tr = el('tr')
  tr.dataset.session = id
  labels.forEach((l, i) => tr.append(el('td', { 'data-label': l, class: i === 0 || i === 2 ? 'mono' : i >= 4 ? 'num' : '' })))
  tr.children[0].textContent = id.slice(0, 8)
  tr.children[0].title = id
  const btn = el('button', { class: 'danger', type: 'button', text: 'Disconnect', onclick: () => disconnect(service, id, btn) })
  tr.append(el('td', { 'data-label': '' }, btn))
  return tr
}

async function disconnect (service, id, btn) {
  if (!confirm('Disconnect session ' + id.slice(0, 8) + ' of service ' + service + '?')) return
  btn.disabled = true
  const res = await fetch('services/' + encodeURIComponent(service) + '/sessions/' + encodeURIComponent(id), { method: 'DELETE', headers: { Authorization: 'Bearer ' + token } })
  if (!res.ok) { btn.disabled = false; alert('Could not disconnect: HTTP ' + res.status) }
}

function describe (e) {
  const parts = []
  if (e.service) parts.push(e.service.name + (e.service.port ? ' :' + e.service.port : ''))
  if (e.session && e.session.clientAddress) parts.push('from ' + e.session.clientAddress)
  if (e.remoteAddress) parts.push('from ' + e.remoteAddress + (e.endpoint ? ' (' + e.endpoint + ')' : ''))
  if (e.reason) parts.push(e.reason)
  return parts.join(' ')
}

function onEvent (e) {
  const list = $('events')
  const time = new Date(e.time)
  list.prepend(el('li', null, el('time', { datetime: e.time, text: time.toLocaleTimeString() }), el('span', { class: 'ev', text: e.event }), describe(e)))
  while (list.children.length > 30) list.lastChild.remove()
  $('no-events').hidden = true
}

function drawChart (now) {
  const canvas = $('chart')
  const dpr = window.devicePixelRatio || 1
  const w = canvas.clientWidth, h = canvas.clientHeight
  if (w === 0) return
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr) }
  const ctx = canvas.getContext('2d')
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
  ctx.clearRect(0, 0, w, h)
  const styles = getComputedStyle(document.documentElement)
  const muted = styles.getPropertyValue('--muted').trim(), line = styles.getPropertyValue('--line').trim()
  let max = 1024 // the scale never goes below 1 KiB/s
  for (const pts of series.values()) for (const p of pts) max = Math.max(max, p.rate)
  const step = Math.pow(2, Math.ceil(Math.log2(max)))
  const left = 70, bottom = h - 18, top = 8, right = w - 8
  ctx.font = '11px system-ui, sans-serif'
  ctx.fillStyle = muted
  ctx.strokeStyle = line
  ctx.lineWidth = 1
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke()
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle'
    ctx.fillText(fmtRate(step * i / 4), left - 6, y)
  }
  ctx.textAlign = 'left'; ctx.textBaseline = 'top'; ctx.fillText('-2 min', left, bottom + 4)
  ctx.textAlign = 'right'; ctx.fillText('now', right, bottom + 4)
  const x = (t) => left + (right - left) * (1 - (now - t) / WINDOW_MS)
  const y = (r) => bottom - (bottom - top) * r / step
  const legend = $('legend')
  legend.replaceChildren()
  for (const [name, pts] of series) {
    ctx.strokeStyle = color(name); ctx.lineWidth = 2
    ctx.beginPath()
    pts.forEach((p, i) => { if (i === 0) ctx.moveTo(x(p.t), y(p.rate)); else ctx.lineTo(x(p.t), y(p.rate)) })
    ctx.stroke()
    const sw = el('i')
    sw.style.background = color(name)
    legend.append(el('li', null, sw, name + ' ' + fmtRate(pts.length ? pts[pts.length - 1].rate : 0)))
  }
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  token = $('token').value.trim()
  if (!token) return
  sessionStorage.setItem(KEY, token)
  $('token').value = ''
  connect()
})
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY); token = ''
  if (abort) abort.abort()
  showLogin('')
})
window.addEventListener('resize', () => { if (latest) drawChart(Date.parse(latest.time)) })
setInterval(() => {
  if (!latest) return
  for (const card of $('services').children) {
    for (const tr of card.querySelectorAll('tbody tr')) { const c = tr.children[3]; if (c.title) c.textContent = fmtAge(c.title) }
  }
}, 1000)
if (token) connect(); else showLogin('')
`

const HTML_HEAD = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>reverselb dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header class="top">
  <h1>reverselb</h1>
  <span id="status"><span id="dot" class="dot"></span><span id="status-text">loading…</span></span>
  <button id="logout" type="button" hidden>Sign out</button>
</header>
<section id="login" hidden>
  <form id="login-form" autocomplete="on">
    <label for="token">Token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" placeholder="the server's --token" required>
    <button class="primary" type="submit">Connect</button>
    <p id="login-error" role="alert"></p>
  </form>
</section>
<main id="app" hidden>
  <div class="stats">
    <div class="stat"><b id="stat-services">0</b><span>services</span></div>
    <div class="stat"><b id="stat-sessions">0</b><span>sessions</span></div>
    <div class="stat"><b id="stat-active">0</b><span>active connections</span></div>
    <div class="stat"><b id="stat-rate">0 B/s</b><span>throughput</span></div>
  </div>
  <section class="card">
    <h2>Throughput per service (bytes/s, in + out)</h2>
    <canvas id="chart" aria-label="bytes per second per service over the last two minutes"></canvas>
    <ul id="legend"></ul>
  </section>
  <section>
    <h2>Services</h2>
    <div id="services"></div>
    <p id="empty" class="card empty">No services registered.</p>
  </section>
  <section class="card">
    <h2>Recent events</h2>
    <p id="no-events" class="empty">None yet.</p>
    <ol id="events"></ol>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`

export const DASHBOARD_HTML = HTML_HEAD

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

/** Allows exactly the page's own inline script and style, and fetches to the same origin. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')
