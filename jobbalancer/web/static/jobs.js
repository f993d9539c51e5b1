// The jobs pages: the list (filters, search, submit form, live) and one job's detail.

import { ApiError, api, get, onCluster, post, stream } from "./api.js";
import { ago, badge, clear, debounce, duration, h, toast, what, when } from "./dom.js";

const STATUSES = ["scheduled", "queued", "assigned", "running", "succeeded", "failed", "timed_out", "cancelled", "rejected"];
const UNFINISHED = ["scheduled", "queued", "assigned", "running"];
const enc = encodeURIComponent;

function submitForm() {
  const error = h("p", { class: "error", hidden: true });
  const form = h(
    "form",
    { class: "card submit", id: "submit-form" },
    h("h2", {}, "Submit a command"),
    h("label", { class: "wide" }, "Command", h("input", { name: "command", required: true, placeholder: "echo hello; sleep 2" })),
    h("label", {}, "Watchdog (s)", h("input", { name: "watchdog", type: "number", min: "0", step: "any" })),
    h("label", {}, "Queue", h("input", { name: "queue", value: "default" })),
    h("label", {}, "Priority", h("input", { name: "priority", type: "number", value: "0", step: "1" })),
    h("label", {}, "Retries", h("input", { name: "retries", type: "number", min: "0", max: "100", placeholder: "queue's default" })),
    h("label", { class: "check" }, h("input", { name: "realtime", type: "checkbox" }), "Realtime"),
    h("button", { type: "submit" }, "Submit"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      command: data.get("command"),
      queue: data.get("queue") || "default",
      priority: Number(data.get("priority") || 0),
      realtime: data.get("realtime") === "on",
    };
    if (data.get("watchdog")) body.watchdog = Number(data.get("watchdog"));
    if (data.get("retries") !== "") body.retries = Number(data.get("retries")); // left empty: the queue's default
    error.hidden = true;
    try {
      const job = await post("/api/jobs", body);
      location.hash = `#/jobs/${enc(job.id)}`;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.data) {
        toast(`Job ${e.data.id} rejected: no worker had a free slot`, "error");
        location.hash = `#/jobs/${enc(e.data.id)}`;
        return;
      }
      error.textContent = e.message;
      error.hidden = false;
    }
  });
  return form;
}

export function jobsView(root) {
  const filters = { status: "", queue: "", worker: "", q: "" };
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  let next = null;
  const field = (name, input) => {
    input.name = name;
    input.addEventListener("input", debounce(() => ((filters[name] = input.value.trim()), load()), 250));
    return h("label", {}, name === "q" ? "Search" : name[0].toUpperCase() + name.slice(1), input);
  };
  const statusSelect = h("select", {}, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  statusSelect.addEventListener("change", () => ((filters.status = statusSelect.value), load()));
  const query = () => {
    const params = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
    return params;
  };
  const row = (job) =>
    h(
      "tr",
      { dataset: { id: job.id } },
      h("td", { class: "mono" }, h("a", { href: `#/jobs/${enc(job.id)}` }, job.id.slice(0, 12))),
      h("td", { class: "what" }, what(job)),
      h("td", {}, badge(job.status)),
      h("td", {}, job.worker || ""),
      h("td", {}, job.queue),
      h("td", { title: when(job.created_at) }, ago(job.created_at)),
      h("td", { class: "num" }, duration(job)),
      h("td", { class: "num" }, job.exit_code ?? ""),
    );
  async function load(append = false) {
    const params = query();
    if (append && next) params.set("cursor", next);
    try {
      const page = await get(`/api/jobs?${params}`);
      next = page.next;
      more.hidden = !next;
      if (append) rows.append(...page.jobs.map(row));
      else clear(rows, page.jobs.length ? page.jobs.map(row) : h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No jobs.")));
    } catch (e) {
      toast(e.message, "error");
    }
  }
  more.addEventListener("click", () => load(true));
  clear(
    root,
    h("h1", {}, "Jobs"),
    submitForm(),
    h(
      "div",
      { class: "filters" },
      h("label", {}, "Status", statusSelect),
      field("queue", h("input", { placeholder: "any" })),
      field("worker", h("input", { placeholder: "any" })),
      field("q", h("input", { placeholder: "id or command", type: "search" })),
    ),
    h(
      "table",
      { class: "jobs" },
      h("thead", {}, h("tr", {}, ["id", "what", "status", "worker", "queue", "created", "ran", "exit"].map((c) => h("th", {}, c)))),
      rows,
    ),
    more,
  );
  load();
  const refresh = debounce(() => load(), 400);
  return onCluster((type) => type === "job" && refresh());
}

function outputPane(title, cls) {
  const pre = h("pre", { class: `output ${cls}` });
  return { pre, el: h("section", { class: "pane" }, h("h3", {}, title), pre) };
}

export function jobView(root, id) {
  const info = h("div", { class: "card" });
  const actions = h("div", { class: "actions" });
  const timeline = h("ol", { class: "timeline" });
  const out = outputPane("stdout", "stdout");
  const err = outputPane("stderr", "stderr");
  let stopFollow = null;
  let job = null;

  const act = (label, fn, cls = "") => h("button", { type: "button", class: cls, onclick: fn }, label);
  function renderInfo() {
    const rows = [
      ["status", badge(job.status)],
      ["kind", job.kind],
      [job.kind === "call" ? "call" : job.script ? "script" : "command", h("code", {}, what(job))],
      // a script job runs the body it was given at submit (argv: interpreter, flag, body, ...)
      ...(job.script && job.argv ? [["body", h("pre", { class: "inline mono" }, job.argv[2])]] : []),
      ["queue", job.queue],
      ["worker", job.worker || "—"],
      ["attempts", `${job.attempts} (retries allowed: ${job.retries}${job.failures ? `, spent: ${job.failures}` : ""})`],
      ...(job.retry_at ? [["next retry", when(job.retry_at)]] : []),
      ["priority", job.priority],
      ["watchdog", job.watchdog ? `${job.watchdog} s` : "none"],
      ["realtime", job.realtime ? "yes" : "no"],
      ["created", when(job.created_at)],
      ["started", when(job.started_at)],
      ["finished", when(job.finished_at)],
      ["ran for", duration(job)],
      ["exit code", job.exit_code ?? ""],
      ["error", job.error ? h("pre", { class: "inline" }, job.error) : ""],
    ];
    if (job.kind === "call" && job.status === "succeeded") rows.push(["result", h("code", {}, JSON.stringify(job.result))]);
    clear(info, h("dl", { class: "spec" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    const finished = !UNFINISHED.includes(job.status);
    clear(
      actions,
      finished ? act("Restart", restart) : act("Terminate", terminate, "danger"),
      finished ? act("Delete", remove, "danger") : null,
    );
  }
  async function load() {
    try {
      job = await get(`/api/jobs/${enc(id)}`);
    } catch (e) {
      clear(root, h("h1", {}, "Job"), h("p", { class: "error" }, e.message));
      return false;
    }
    renderInfo();
    const events = await get(`/api/jobs/${enc(id)}/events`).catch(() => []);
    clear(timeline, events.map((ev) => h("li", {}, badge(ev.status), " ", when(ev.at), ev.worker ? ` on ${ev.worker}` : "")));
    return true;
  }
  function follow() {
    if (stopFollow) stopFollow();
    out.pre.textContent = "";
    err.pre.textContent = "";
    stopFollow = stream(`/api/jobs/${enc(id)}/logs?follow=true`, (type, data) => {
      if (type === "stdout") out.pre.append(data);
      else if (type === "stderr") err.pre.append(data);
      else if (type === "end") load();
    });
  }
  async function terminate() {
    try {
      const res = await post(`/api/jobs/${enc(id)}/cancel`);
      toast(`Job ${res.outcome}`);
      load();
    } catch (e) {
      toast(e.message, "error");
    }
  }
  async function restart() {
    try {
      await post(`/api/jobs/${enc(id)}/restart`);
      toast("Restarted");
      await load();
      follow();
    } catch (e) {
      toast(e.message, "error");
    }
  }
  async function remove() {
    if (!confirm(`Delete job ${id}?`)) return;
    try {
      await api("DELETE", `/api/jobs/${enc(id)}`);
      toast("Deleted");
      location.hash = "#/jobs";
    } catch (e) {
      toast(e.message, "error");
    }
  }
  clear(
    root,
    h("h1", {}, "Job ", h("span", { class: "mono" }, id)),
    actions,
    h("div", { class: "detail" }, info, h("div", { class: "card" }, h("h3", {}, "Timeline"), timeline)),
    h("div", { class: "outputs" }, out.el, err.el),
  );
  load().then((found) => found && follow());
  const refresh = debounce(load, 200);
  const unlisten = onCluster((type, data) => type === "job" && data.job === id && refresh());
  return () => {
    unlisten();
    if (stopFollow) stopFollow();
  };
}
