// The dashboard: asks for the token once, keeps one live event stream, and routes #/... to a view.

import { get, startClusterStream, token, whenUnauthorized } from "./api.js";
import { overviewView, settingsView, workersView } from "./cluster.js";
import { jobView, jobsView } from "./jobs.js";
import { scriptsView } from "./scripts.js";

const view = document.getElementById("view");
const login = document.getElementById("login");
let cleanup = () => {};
let stopStream = null;

function route() {
  cleanup();
  const [, page = "overview", id] = location.hash.match(/^#\/([^/]*)\/?(.*)$/) || [];
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === page);
  const views = { overview: overviewView, jobs: jobsView, workers: workersView, settings: settingsView };
  views.scripts = (root) => scriptsView(root, id ? decodeURIComponent(id) : null);
  const target = page === "jobs" && id ? (root) => jobView(root, decodeURIComponent(id)) : views[page] || overviewView;
  cleanup = target(view) || (() => {});
}

function setLive(on) {
  const el = document.getElementById("live");
  el.textContent = on ? "live" : "offline";
  el.classList.toggle("on", on);
}

function askToken(message) {
  if (stopStream) stopStream();
  stopStream = null;
  cleanup();
  cleanup = () => {};
  view.replaceChildren();
  const error = document.getElementById("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  login.hidden = false;
  document.getElementById("token").focus();
}

function start() {
  login.hidden = true;
  stopStream = startClusterStream(setLive);
  route();
}

whenUnauthorized(() => {
  token.clear();
  askToken("That token was refused.");
});

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token.set(document.getElementById("token").value.trim());
  try {
    await get("/api/config"); // check the token before showing anything
    start();
  } catch (e) {
    if (token.get()) askToken(e.message);
  }
});

document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  askToken();
});

window.addEventListener("hashchange", () => token.get() && route());
if (token.get()) start();
else askToken();
