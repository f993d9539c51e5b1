// Small helpers to build the page: elements, formatting, bars and sparklines.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function badge(status) {
  return h("span", { class: `badge s-${status}`, dataset: { status } }, status);
}

export function when(epochSeconds) {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toLocaleString();
}

export function ago(epochSeconds) {
  if (!epochSeconds) return "";
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 60) return `${s.toFixed(0)}s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)}m ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return `${(s / 86400).toFixed(1)}d ago`;
}

export function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at || Date.now() / 1000;
  const s = Math.max(0, end - job.started_at);
  return s < 60 ? `${s.toFixed(s < 10 ? 2 : 1)} s` : `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}

export function what(job) {
  if (job.script) return [job.script, ...Object.entries(job.params || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`)].join(" ");
  if (job.command !== undefined && job.command !== null) return job.command;
  if (job.argv) return job.argv.map((a) => (/^[\w.\/:=@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
  if (job.func) return `${job.func}(${(job.args || []).map((a) => JSON.stringify(a)).join(", ")})`;
  return job.kind;
}

// A horizontal bar: value out of max, with a label.
export function bar(value, max, label) {
  const ratio = max > 0 && value !== null && value !== undefined ? Math.min(1, value / max) : 0;
  const fill = h("span", { class: `fill ${ratio > 0.85 ? "hot" : ratio > 0.6 ? "warm" : ""}` });
  fill.style.width = `${(ratio * 100).toFixed(1)}%`;
  return h("span", { class: "bar", title: label }, fill, h("span", { class: "bar-label" }, label));
}

// A sparkline of the last values (numbers), as inline SVG.
export function sparkline(values, { width = 240, height = 48, label = "" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" ") || `0,${height - 2} ${width},${height - 2}`);
  svg.append(line);
  return svg;
}

export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 4000);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
