// The scripts page: named scripts to list, write, delete, and run with a form for their parameters.
// #/scripts lists them with an empty editor; #/scripts/NAME edits and runs one.

import { ApiError, api, get, post } from "./api.js";
import { ago, clear, h, toast, when } from "./dom.js";

const LANGUAGES = ["sh", "bash", "python", "node"];
const enc = encodeURIComponent;

function paramRow(param = {}) {
  const row = h(
    "div",
    { class: "param-row" },
    h("label", {}, "Name", h("input", { name: "param-name", value: param.name || "", required: true, placeholder: "who" })),
    h("label", {}, "Default", h("input", { name: "param-default", value: param.default ?? "", placeholder: "none" })),
    h("label", { class: "check" }, h("input", { name: "param-required", type: "checkbox", checked: !!param.required }), "Required"),
    h("label", {}, "Description", h("input", { name: "param-description", value: param.description || "" })),
  );
  row.append(h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove"));
  return row;
}

function readParams(box) {
  return [...box.querySelectorAll(".param-row")].map((row) => {
    const value = (name) => row.querySelector(`[name=${name}]`);
    const fallback = value("param-default").value;
    return {
      name: value("param-name").value.trim(),
      default: fallback === "" ? null : fallback,
      required: value("param-required").checked,
      description: value("param-description").value,
    };
  });
}

function editor(script, onSaved) {
  const error = h("p", { class: "error", hidden: true });
  const params = h("div", { class: "params" }, (script?.params || []).map(paramRow));
  const name = h("input", { name: "name", required: true, value: script?.name || "", placeholder: "backup-db", readonly: !!script });
  const language = h("select", { name: "language" }, LANGUAGES.map((l) => h("option", { value: l, selected: script?.language === l }, l)));
  const body = h("textarea", { name: "body", required: true, rows: 10, spellcheck: "false", placeholder: 'echo "hello $1"' });
  body.value = script?.body || "";
  const form = h(
    "form",
    { class: "card script-form", id: "script-form" },
    h("h2", {}, script ? `Edit ${script.name}` : "New script"),
    h("div", { class: "row" }, h("label", {}, "Name", name), h("label", {}, "Language", language)),
    h("label", {}, "Body", body),
    h("p", { class: "muted" }, "Parameters reach the script as arguments in this order ($1, sys.argv[1:], process.argv.slice(1)) and as $JB_PARAM_<NAME>."),
    params,
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => params.append(paramRow()) }, "Add parameter"), h("button", { type: "submit" }, "Save")),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const saved = await api("PUT", `/api/scripts/${enc(name.value.trim())}`, { language: language.value, body: body.value, params: readParams(params) });
      toast(`Saved ${saved.name}`);
      onSaved(saved);
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
  return form;
}

function runForm(script) {
  const error = h("p", { class: "error", hidden: true });
  const inputs = script.params.map((p) =>
    h(
      "label",
      { title: p.description || null },
      p.required ? `${p.name} *` : p.name,
      h("input", { name: `param-${p.name}`, required: p.required, placeholder: p.default ?? "" }),
      p.description ? h("span", { class: "muted" }, p.description) : null,
    ),
  );
  const form = h(
    "form",
    { class: "card run-form", id: "run-form" },
    h("h2", {}, `Run ${script.name}`),
    inputs.length ? inputs : h("p", { class: "muted" }, "No parameters."),
    h("div", { class: "row" }, h("label", {}, "Queue", h("input", { name: "queue", value: "default" })), h("label", {}, "Watchdog (s)", h("input", { name: "watchdog", type: "number", min: "0", step: "any" }))),
    h("button", { type: "submit" }, "Run"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {};
    for (const p of script.params) {
      const value = form.elements[`param-${p.name}`].value;
      if (value !== "") params[p.name] = value; // left empty: the default applies
    }
    const run = { script: script.name, params, queue: form.elements.queue.value || "default" };
    if (form.elements.watchdog.value) run.watchdog = Number(form.elements.watchdog.value);
    error.hidden = true;
    try {
      const job = await post("/api/jobs", run);
      location.hash = `#/jobs/${enc(job.id)}`;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.data) {
        location.hash = `#/jobs/${enc(e.data.id)}`;
        return;
      }
      error.textContent = e.message;
      error.hidden = false;
    }
  });
  return form;
}

function listTable(scripts) {
  const row = (s) =>
    h(
      "tr",
      { dataset: { script: s.name } },
      h("td", {}, h("a", { href: `#/scripts/${enc(s.name)}` }, s.name)),
      h("td", {}, s.language),
      h("td", { class: "mono" }, s.params.map((p) => (p.required ? p.name : `${p.name}=${p.default ?? ""}`)).join(" ")),
      h("td", { title: when(s.updated) }, ago(s.updated)),
    );
  return h(
    "table",
    { class: "scripts" },
    h("thead", {}, h("tr", {}, ["name", "language", "params", "saved"].map((c) => h("th", {}, c)))),
    h("tbody", {}, scripts.length ? scripts.map(row) : h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No scripts yet."))),
  );
}

async function remove(name) {
  if (!confirm(`Delete script ${name}? Jobs already submitted from it keep running as they were.`)) return;
  try {
    await api("DELETE", `/api/scripts/${enc(name)}`);
    toast(`Deleted ${name}`);
    location.hash = "#/scripts";
  } catch (e) {
    toast(e.message, "error");
  }
}

export function scriptsView(root, name) {
  let alive = true;
  const show = (saved) => {
    const target = `#/scripts/${enc(saved.name)}`;
    if (location.hash === target) load();
    else location.hash = target;
  };
  async function load() {
    let scripts;
    let script = null;
    try {
      scripts = await get("/api/scripts");
      if (name) script = await get(`/api/scripts/${enc(name)}`);
    } catch (e) {
      if (alive) clear(root, h("h1", {}, "Scripts"), h("p", { class: "error" }, e.message), h("a", { href: "#/scripts" }, "All scripts"));
      return;
    }
    if (!alive) return;
    const head = name
      ? h("div", { class: "actions" }, h("a", { href: "#/scripts", class: "back" }, "← All scripts"), h("button", { type: "button", class: "danger", onclick: () => remove(name) }, "Delete"))
      : null;
    clear(
      root,
      h("h1", {}, name ? h("span", {}, "Script ", h("span", { class: "mono" }, name)) : "Scripts"),
      head,
      script ? h("div", { class: "scripts-layout" }, runForm(script), editor(script, show)) : h("div", { class: "scripts-layout" }, listTable(scripts), editor(null, show)),
    );
  }
  load();
  return () => {
    alive = false;
  };
}
