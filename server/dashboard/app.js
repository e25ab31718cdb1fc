'use strict'
const $ = (id) => document.getElementById(id)
const KEY = 'reverselb.token'
const tokenInput = () => /** @type {HTMLInputElement} */ ($('token'))
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
      buf += value.replace(/\r\n?/g, '\n')
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) { onBlock(buf.slice(0, i)); buf = buf.slice(i + 2) }
    }
    throw new Error('stream ended')
  } catch {
    if (ctrl !== abort || ctrl.signal.aborted) return
    setStatus('down', 'disconnected, retrying in ' + Math.round(retryMs / 1000) + ' s')
    setTimeout(() => { if (ctrl === abort && token) connect() }, retryMs)
    retryMs = Math.min(retryMs * 2, 30000)
  }
}

function onBlock (block) {
  let event = 'message'
  const data = []
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue
    const c = line.indexOf(':')
    const field = c < 0 ? line : line.slice(0, c)
    const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '')
    if (field === 'event') event = value; else if (field === 'data') data.push(value)
  }
  if (data.length === 0) return
  const msg = JSON.parse(data.join('\n'))
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
  return h?.length ? h[h.length - 1] : { rate: 0, rateIn: 0, rateOut: 0 }
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
  const cards = new Map([...box.children].map(c => [/** @type {HTMLElement} */ (c).dataset.service, c]))
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
    el('thead', null, el('tr', null, ...['Session', 'Instance', 'Client', 'Connected', 'Active', 'Total', 'In', 'Out', 'Its connection carries', ''].map((h, i) => el('th', { text: h, class: i >= 4 && i <= 7 ? 'num' : '' })))),
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
    // What carries the client: a WebSocket, or the HTTP transport (behind a proxy that blocks upgrades), and whether the end-to-end layer runs in it; in a cluster, the node the client is connected to.
    cells[2].textContent = x.clientAddress + (x.node ? ' @ ' + x.node : '') + ' · ' + (x.connection.transport === 'http' ? 'HTTP' : 'WebSocket') + (x.connection.e2e ? ' + e2e' : '')
    cells[3].textContent = fmtAge(x.connectedSince)
    cells[3].title = x.connectedSince
    cells[4].textContent = String(x.activeConnections)
    cells[5].textContent = String(x.totalConnections)
    cells[6].textContent = fmtBytes(x.bytesIn)
    cells[7].textContent = fmtBytes(x.bytesOut)
    // Every service registered over the same WebSocket (one client carrying many services).
    cells[8].textContent = x.connection.services.join(', ')
    tr.classList.toggle('closing', x.closing)
  }
  for (const tr of rows.values()) tr.remove()
}

function sessionRow (service, id) {
  const labels = ['Session', 'Instance', 'Client', 'Connected', 'Active', 'Total', 'In', 'Out', 'Its connection carries']
  const tr = el('tr')
  tr.dataset.session = id
  labels.forEach((l, i) => { tr.append(el('td', { 'data-label': l, class: i === 0 || i === 2 ? 'mono' : i >= 4 ? 'num' : '' })) })
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
  if (e.session?.clientAddress) parts.push('from ' + e.session.clientAddress)
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
  const canvas = /** @type {HTMLCanvasElement} */ ($('chart'))
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
  const step = 2 ** Math.ceil(Math.log2(max))
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
  token = tokenInput().value.trim()
  if (!token) return
  sessionStorage.setItem(KEY, token)
  tokenInput().value = ''
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
    for (const tr of card.querySelectorAll('tbody tr')) { const c = /** @type {HTMLElement} */ (tr.children[3]); if (c.title) c.textContent = fmtAge(c.title) }
  }
}, 1000)
if (token) connect(); else showLogin('')
