// The cluster pages: overview (live), workers (drain), settings.

import { api, get, onCluster, post } from "./api.js";
import { bar, badge, clear, debounce, h, sparkline, toast } from "./dom.js";

// The charts draw the history the cluster keeps (GET /api/stats/history: the active balancer samples
// every 5 s), so a reload or another browser shows the same lines.
const HISTORY_MINUTES = 15;

function chart(values, label, caption) {
  return h("figure", { class: "card" }, sparkline(values, { label }), h("figcaption", {}, caption));
}

function charts(history, waitingNow) {
  const points = history.points;
  if (!points.length) {
    return h("p", { class: "muted", id: "history-empty" }, "No history yet: the active balancer samples the cluster every 5 s.");
  }
  const finished = points.map((p) => p.finished ?? 0);
  const waiting = points.map((p) => p.waiting);
  const span = Math.max(1, Math.round((history.now - points[0].at) / 60));
  const every = `${history.interval_s} s`;
  return [
    chart(finished, `jobs finished per ${every}`, `jobs finished per ${every}, last ${span} min (latest ${finished.at(-1)}, peak ${Math.max(...finished)})`),
    chart(waiting, "waiting depth", `waiting depth, last ${span} min (now ${waitingNow}, peak ${Math.max(...waiting)})`),
  ];
}

function workerRow(w, withActions) {
  const slots = w.concurrency ?? 0;
  const drain = async (verb) => {
    try {
      await post(`/api/workers/${encodeURIComponent(w.name)}/${verb}`);
      toast(verb === "drain" ? `${w.name}: draining, takes no new jobs` : `${w.name}: takes jobs again`);
    } catch (e) {
      toast(e.message, "error");
    }
  };
  return h(
    "tr",
    { dataset: { worker: w.name } },
    h("td", {}, h("strong", {}, w.name), h("div", { class: "muted" }, `${w.host || ""} pid ${w.pid ?? "?"}`)),
    h("td", {}, badge(w.state)),
    h("td", {}, bar(w.running, slots, `${w.running}/${slots} slots`)),
    h("td", {}, bar(w.cpu, 100, w.cpu === null ? "?" : `${w.cpu.toFixed(0)}% cpu`)),
    h("td", {}, bar(w.mem, 100, w.mem === null ? "?" : `${w.mem.toFixed(0)}% mem`)),
    h("td", { class: "num" }, w.load === null ? "" : w.load.toFixed(2)),
    h("td", { class: "num" }, `${w.last_seen_s.toFixed(1)}s`),
    h("td", { class: "num" }, w.jobs_done),
    h("td", {}, w.queues.join(", ")),
    withActions
      ? h(
          "td",
          {},
          w.state === "draining"
            ? h("button", { type: "button", class: "secondary", onclick: () => drain("resume") }, "Resume")
            : h("button", { type: "button", class: "secondary", onclick: () => drain("drain"), disabled: w.state === "dead" }, "Drain"),
        )
      : null,
  );
}

function workersTable(workers, withActions) {
  const head = ["worker", "state", "slots", "cpu", "memory", "load", "heartbeat", "done", "queues"];
  if (withActions) head.push("");
  return h(
    "table",
    { class: "workers" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      workers.length ? workers.map((w) => workerRow(w, withActions)) : h("tr", {}, h("td", { colspan: head.length, class: "empty" }, "No workers registered.")),
    ),
  );
}

function poll(fn, ms) {
  fn();
  const timer = setInterval(fn, ms);
  const refresh = debounce(fn, 300);
  const unlisten = onCluster((type) => type === "worker" && refresh());
  return () => {
    clearInterval(timer);
    unlisten();
  };
}

export function overviewView(root) {
  const stats = h("div", { class: "stats" });
  const chartBox = h("div", { class: "charts" });
  const workers = h("div", {});
  clear(root, h("h1", {}, "Overview"), stats, chartBox, h("h2", {}, "Workers"), workers);
  return poll(async () => {
    let data, history;
    try {
      [data, history] = await Promise.all([get("/api/overview"), get(`/api/stats/history?minutes=${HISTORY_MINUTES}`)]);
    } catch (e) {
      toast(e.message, "error");
      return;
    }
    const waiting = Object.values(data.waiting).reduce((a, b) => a + b, 0);
    const slots = data.workers.filter((w) => w.state !== "dead").reduce((a, w) => a + (w.concurrency || 0), 0);
    const running = data.workers.reduce((a, w) => a + w.running, 0);
    const stat = (label, value, id) => h("div", { class: "stat", id }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
    clear(
      stats,
      stat("workers alive", data.workers.filter((w) => w.state !== "dead").length, "stat-workers"),
      stat("slots busy", `${running}/${slots}`, "stat-slots"),
      stat("waiting", waiting, "stat-waiting"),
      ...["running", "succeeded", "failed", "timed_out", "cancelled"].map((s) => stat(s.replace("_", " "), data.jobs[s] || 0, `stat-${s}`)),
    );
    clear(chartBox, charts(history, waiting));
    clear(workers, workersTable(data.workers, false));
  }, 2000);
}

export function workersView(root) {
  const box = h("div", {});
  clear(root, h("h1", {}, "Workers"), h("p", { class: "muted" }, "A drained worker finishes what it holds and takes no new jobs."), box);
  return poll(async () => {
    try {
      clear(box, workersTable(await get("/api/workers"), true));
    } catch (e) {
      toast(e.message, "error");
    }
  }, 2000);
}

const SETTINGS = [
  ["policy", "Placement policy", "text"],
  ["max_jobs_per_worker", "Max jobs per worker (0 = no cap)", "number"],
  ["heartbeat_timeout", "Heartbeat timeout (s)", "number"],
  ["prefetch", "Prefetch (jobs beyond free slots)", "number"],
  ["poison_limit", "Poison limit (lost deliveries)", "number"],
  ["kill_grace", "Kill grace (s)", "number"],
  ["result_ttl", "Keep finished jobs (s)", "number"],
  ["output_cap", "Output kept per stream (bytes)", "number"],
];

export function settingsView(root) {
  const form = h("form", { class: "card settings", id: "settings-form" });
  const note = h("p", { class: "muted" });
  clear(root, h("h1", {}, "Settings"), h("p", { class: "muted" }, "Applied live by the balancer and the workers within a second."), form, note);
  let current = {};
  async function load() {
    const [settings, policies] = await Promise.all([get("/api/config"), get("/api/policies")]);
    current = settings;
    const list = h("datalist", { id: "policies" }, policies.map((p) => h("option", { value: p })));
    const fields = SETTINGS.map(([name, label, type]) =>
      h("label", {}, label, h("input", { name, type, value: settings[name], step: "any", list: name === "policy" ? "policies" : null, required: true })),
    );
    clear(form, list, fields, h("p", { class: "error", hidden: true }), h("button", { type: "submit" }, "Save"));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector(".error");
    const changes = {};
    for (const [name, , type] of SETTINGS) {
      const raw = form.elements[name].value.trim();
      const value = type === "number" ? Number(raw) : raw;
      if (String(value) !== String(current[name])) changes[name] = value;
    }
    try {
      current = await api("PATCH", "/api/config", changes);
      error.hidden = true;
      note.textContent = Object.keys(changes).length ? `Saved: ${Object.entries(changes).map(([k, v]) => `${k} = ${v}`).join(", ")}` : "Nothing changed.";
      toast("Settings saved");
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
  load().catch((e) => toast(e.message, "error"));
  return () => {};
}
