// A hand-drawn SVG line chart over a sliding time window: one polyline per series, optional
// guide lines (the seed's 100 ms), y from 0 to a fixed or automatic top. No dependency.

const SVG = 'http://www.w3.org/2000/svg'
const W = 600
const PAD = { left: 44, right: 8, top: 8, bottom: 18 }

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value))
  if (text !== undefined) node.textContent = text
  return node
}

/**
 * `series`: [{ name, color }]; `max`: a fixed top (else the largest value or guide, with room);
 * `log`: a log-10 y axis from 1 (latency: the 100 ms line stays readable beside a 10 s outage);
 * `guides`: [{ value, label }]; `windowMs`: how much time the x axis spans; `height`: of the viewBox (width 600).
 * The svg carries data-points, data-min and data-last (of the first series) for tests and curious readers.
 */
export function lineChart(svg, { series, max, log = false, guides = [], windowMs = 60_000, unit = '', height: H = 160 }) {
  const points = [] // { t, values }
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`)

  function render(now = Date.now()) {
    while (points.length && points[0].t < now - windowMs) points.shift()
    const values = points.flatMap((p) => p.values.filter(Number.isFinite))
    const top = (typeof max === 'function' ? max() : max) ?? Math.max(log ? 1000 : 1, ...values, ...guides.map((g) => g.value * 1.5)) * 1.1
    const x = (t) => PAD.left + ((t - (now - windowMs)) / windowMs) * (W - PAD.left - PAD.right)
    const share = log ? (v) => Math.log10(Math.max(1, v)) / Math.log10(Math.max(10, top)) : (v) => v / top
    const y = (v) => H - PAD.bottom - Math.min(1, share(v)) * (H - PAD.top - PAD.bottom)
    const ticks = log ? [1, 10, 100, 1000, 10_000, 100_000].filter((v) => v <= top) : [0, top / 2, top]

    const nodes = [el('rect', { class: 'frame', x: PAD.left, y: PAD.top, width: W - PAD.left - PAD.right, height: H - PAD.top - PAD.bottom })]
    for (const v of ticks) {
      const label = unit === ' ms' && v >= 1000 ? `${v / 1000} s` : `${Math.round(v)}${unit}`
      nodes.push(el('text', { class: 'tick', x: PAD.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, label))
    }
    nodes.push(el('text', { class: 'tick', x: W - PAD.right, y: H - 4, 'text-anchor': 'end' }, 'now'))
    nodes.push(el('text', { class: 'tick', x: PAD.left, y: H - 4 }, `-${windowMs / 1000} s`))
    for (const guide of guides) {
      nodes.push(el('line', { class: 'guide', x1: PAD.left, x2: W - PAD.right, y1: y(guide.value), y2: y(guide.value) }))
      nodes.push(el('text', { class: 'guide-label', x: W - PAD.right - 4, y: y(guide.value) - 4, 'text-anchor': 'end' }, guide.label))
    }
    series.forEach((s, i) => {
      const drawn = points.filter((p) => Number.isFinite(p.values[i]))
      const d = drawn.map((p) => `${x(p.t).toFixed(1)},${y(p.values[i]).toFixed(1)}`).join(' ')
      nodes.push(el('polyline', { class: 'line', points: d, stroke: s.color }))
      nodes.push(el('text', { class: 'legend', x: PAD.left + 6 + i * 70, y: PAD.top + 14, fill: s.color }, s.name))
    })
    svg.replaceChildren(...nodes)
    const first = points.map((p) => p.values[0]).filter(Number.isFinite)
    svg.dataset.points = String(first.length)
    if (first.length) {
      svg.dataset.min = String(Math.min(...first))
      svg.dataset.last = String(first.at(-1))
    }
  }

  return {
    /** Adds one point per series at time `t` (NaN: no value for that series). */
    push(values, t = Date.now()) {
      points.push({ t, values })
    },
    render
  }
}
