// Talking to the HTTP API: the bearer token (session storage), JSON calls, and event streams.
// Streams use fetch, not EventSource, so the token travels in a header and never in a URL.

const TOKEN_KEY = "jb.token";

export class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token.get() || ""}`, ...extra };
}

export async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) onUnauthorized();
  if (!response.ok) {
    const rejected = data.status === "rejected";
    const error = new ApiError(response.status, rejected ? "rejected: no worker had a free slot" : data.detail || response.statusText, data.field);
    error.data = data;
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

// Reads a server-sent event stream; calls onEvent(type, data, id) per message. Returns an abort function.
export function stream(path, onEvent, { onOpen = () => {}, onClose = () => {} } = {}) {
  const controller = new AbortController();
  (async () => {
    try {
      const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
      if (response.status === 401) onUnauthorized();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, cut), onEvent);
          buffer = buffer.slice(cut + 2);
        }
      }
      onClose(null);
    } catch (error) {
      if (!controller.signal.aborted) onClose(error);
    }
  })();
  return () => controller.abort();
}

function dispatch(block, onEvent) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length) onEvent(type, JSON.parse(data.join("\n")), id);
}

// The cluster's event stream, reconnecting with back-off; listeners get (type, data).
const listeners = new Set();
export function onCluster(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function startClusterStream(setLive) {
  let lastId = null;
  let delay = 1000;
  let stop = null;
  const connect = () => {
    const since = lastId ? `?since=${encodeURIComponent(lastId)}` : "";
    stop = stream(
      `/api/events${since}`,
      (type, data, id) => {
        if (id) lastId = id;
        for (const listener of listeners) listener(type, data);
      },
      {
        onOpen: () => {
          delay = 1000;
          setLive(true);
        },
        onClose: () => {
          setLive(false);
          if (token.get()) setTimeout(connect, delay);
          delay = Math.min(delay * 2, 15000);
        },
      },
    );
  };
  connect();
  return () => stop && stop();
}
