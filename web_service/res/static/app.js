// Smart Record Assistant web app: plain modern JS, no build step.
// Talks to the same-origin /api/v1 (web_service forwards with the session's token) and sends the
// session's CSRF token on every unsafe request. Views are chosen by the URL hash.
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
// A UI string; `{name}` placeholders are filled from `values`.
const t = (key, values = {}) =>
  Object.entries(values).reduce((text, [name, value]) => text.replaceAll(`{${name}}`, String(value)), boot.i18n[key] || key);
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// The text shown for an error body (an HTTP answer's, or an SSE `error` event's data).
function errorText(body, status) {
  if (typeof body?.detail === "string") return body.detail;
  return status ? `${t("error.generic")} (${status})` : t("error.generic");
}

class ApiError extends Error {
  constructor(status, body) {
    super(errorText(body, status));
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, { raw = false } = {}) {
  const headers = { "X-CSRF-Token": boot.csrf, Accept: "application/json" };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/login?next=" + encodeURIComponent("/" + location.hash);
    throw new ApiError(401, { detail: "signed out" });
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const items = (page) => (Array.isArray(page) ? page : page?.data || page?.items || []);

function flash(error) {
  const box = $("#flash");
  box.textContent = error ? error.message || String(error) : "";
  box.hidden = !error;
  if (error) setTimeout(() => (box.hidden = true), 6000);
}

function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) flash(error);
    }
  };
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ------------------------------------------------------------------ records list

const recordsState = { q: "", mode: "keyword", tag: "", offset: 0, request: 0 };
const RECORDS_PAGE = 50;

function recordItem(record) {
  return el(
    "li",
    { class: "record-item", "data-id": record.id },
    el(
      "a",
      { href: `#/records/${record.id}` },
      el(
        "div",
        { class: "record-title" },
        record.pinned ? el("span", { class: "pin-mark", title: t("records.pinned"), text: "★ " }) : null,
        document.createTextNode(record.title || "—"),
      ),
      record.match
        ? el("div", { class: "match-snippet", text: record.match.snippet })
        : el("div", { class: "excerpt", text: (record.summary || record.content || "").slice(0, 160) }),
      el("div", {}, ...(record.tags || []).map((tag) => el("span", { class: "tag", text: "#" + tag }))),
    ),
  );
}

async function loadRecords({ more = false } = {}) {
  recordsState.offset = more ? recordsState.offset + RECORDS_PAGE : 0;
  const request = ++recordsState.request;
  const params = new URLSearchParams({ limit: String(RECORDS_PAGE), offset: String(recordsState.offset) });
  if (recordsState.q) params.set("q", recordsState.q);
  if (recordsState.q && recordsState.mode !== "keyword") params.set("mode", recordsState.mode);
  if (recordsState.tag) params.set("tag", recordsState.tag);
  const page = await api("GET", "/api/v1/records?" + params);
  if (request !== recordsState.request) return; // a newer search was started meanwhile (semantic ones take longer)
  const records = items(page);
  const list = $("#record-list");
  if (more) list.append(...records.map(recordItem));
  else list.replaceChildren(...records.map(recordItem));
  $("#records-more").hidden = !page?.has_more;
  $("#records-empty").hidden = list.children.length > 0;
  if (!more && !recordsState.q && !recordsState.tag) renderTagFilter(records);
}

$("#records-more").addEventListener("click", guarded(() => loadRecords({ more: true })));

function renderTagFilter(records) {
  const tags = [...new Set(records.flatMap((r) => r.tags || []))].sort();
  const chip = (label, value) =>
    el("button", {
      text: label,
      class: recordsState.tag === value ? "active" : "",
      "data-tag": value,
      onclick: guarded(async () => {
        recordsState.tag = value;
        document.querySelectorAll("#tag-filter button").forEach((b) => b.classList.toggle("active", b.dataset.tag === value));
        await loadRecords();
      }),
    });
  $("#tag-filter").replaceChildren(...(tags.length ? [chip(t("records.all_tags"), ""), ...tags.map((tag) => chip("#" + tag, tag))] : []));
}

$("#search").addEventListener(
  "input",
  debounce(guarded(async (event) => {
    recordsState.q = event.target.value.trim();
    await loadRecords();
  }), 250),
);
$("#search-mode").addEventListener(
  "change",
  guarded(async (event) => {
    recordsState.mode = event.target.value;
    if (recordsState.q) await loadRecords();
  }),
);

// ------------------------------------------------------------------ editor

let current = null; // the record being edited (server copy)

function fillEditor(record) {
  current = record;
  $("#title").value = record?.title || "";
  $("#content").value = record?.content || "";
  $("#tags").value = (record?.tags || []).join(", ");
  $("#record-actions").hidden = !record;
  $("#save-state").textContent = "";
  showEditorTab("edit");
  renderRecordMeta();
}

function renderRecordMeta() {
  const record = current;
  $("#pin").textContent = record?.pinned ? t("editor.unpin") : t("editor.pin");
  const published = record?.visibility === "public" && record?.slug;
  $("#publish").textContent = published ? t("editor.unpublish") : t("editor.publish");
  $("#public-link-row").hidden = !published;
  if (published) {
    const url = `${location.origin}/p/${encodeURIComponent(record.slug)}`;
    $("#public-link").href = url;
    $("#public-link").textContent = url;
  }
  $("#summary-box").hidden = !record?.summary;
  $("#summary").textContent = record?.summary || "";
  $("#attachments").replaceChildren(
    ...(record?.attachments || []).map((id) => el("figure", {}, el("img", { src: `/api/v1/images/${id}/thumbnail`, alt: "" }))),
  );
}

const RELATED_LIMIT = 5;

// The records nearest in meaning to the one open (empty until the index has it). A side panel:
// when the assistant cannot be reached it is hidden, and the editor works on without a banner.
async function loadRelated(record) {
  $("#related-box").hidden = !record;
  $("#related-list").replaceChildren();
  $("#related-empty").hidden = true;
  if (!record) return;
  let related;
  try {
    related = items(await api("GET", `/api/v1/records/${record.id}/related?limit=${RELATED_LIMIT}`));
  } catch {
    $("#related-box").hidden = true;
    return;
  }
  if (current?.id !== record.id) return; // another record was opened meanwhile
  $("#related-list").replaceChildren(
    ...related.map(({ record: other }) =>
      el("li", { "data-id": other.id }, el("a", { href: `#/records/${other.id}`, text: other.title || "—" })),
    ),
  );
  $("#related-empty").hidden = related.length > 0;
}

function editorFields() {
  const tags = $("#tags").value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  return { title: $("#title").value.trim(), content: $("#content").value, tags };
}

async function saveRecord(extra = {}) {
  const fields = { ...editorFields(), ...extra };
  try {
    if (!current) {
      current = await api("POST", "/api/v1/records", fields);
      history.replaceState(null, "", `#/records/${current.id}`);
    } else {
      current = await api("PATCH", `/api/v1/records/${current.id}`, { ...fields, version: current.version });
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      const latest = error.body?.record || error.body?.current || (await api("GET", `/api/v1/records/${current.id}`));
      fillEditor(latest);
      throw new Error(t("error.conflict"));
    }
    throw error;
  }
  $("#record-actions").hidden = false;
  $("#save-state").textContent = t("editor.saved");
  renderRecordMeta();
}

function showEditorTab(which) {
  $("#tab-edit").classList.toggle("active", which === "edit");
  $("#tab-preview").classList.toggle("active", which === "preview");
  $("#content").hidden = which !== "edit";
  $("#preview").hidden = which !== "preview";
}

$("#save").addEventListener("click", guarded(() => saveRecord()));
$("#tab-edit").addEventListener("click", () => showEditorTab("edit"));
$("#tab-preview").addEventListener(
  "click",
  guarded(async () => {
    // The server renders and sanitises: the same pipeline as the public page.
    const { html } = await api("POST", "/web/preview", { markdown: $("#content").value });
    $("#preview").innerHTML = html;
    showEditorTab("preview");
  }),
);
$("#pin").addEventListener("click", guarded(() => saveRecord({ pinned: !current.pinned })));
$("#delete").addEventListener(
  "click",
  guarded(async () => {
    if (!confirm(t("editor.confirm_delete"))) return;
    await api("DELETE", `/api/v1/records/${current.id}`);
    current = null;
    location.hash = "#/records";
  }),
);
$("#publish").addEventListener(
  "click",
  guarded(async () => {
    const published = current.visibility === "public";
    const answer = await api(published ? "DELETE" : "POST", `/api/v1/records/${current.id}/publish`);
    current = answer && answer.id ? answer : await api("GET", `/api/v1/records/${current.id}`);
    renderRecordMeta();
  }),
);
$("#ai-summarize").addEventListener(
  "click",
  guarded(async (event) => {
    event.target.disabled = true;
    try {
      await saveRecord();
      await api("POST", `/api/v1/records/${current.id}/ai/summarize`);
      current = await api("GET", `/api/v1/records/${current.id}`);
      renderRecordMeta();
    } finally {
      event.target.disabled = false;
    }
  }),
);
$("#ai-tags").addEventListener(
  "click",
  guarded(async (event) => {
    event.target.disabled = true;
    try {
      const answer = await api("POST", `/api/v1/records/${current.id}/ai/tags`);
      const suggested = answer?.result || answer?.tags || answer?.suggestions || [];
      const merged = [...new Set([...editorFields().tags, ...suggested])];
      $("#tags").value = merged.join(", ");
    } finally {
      event.target.disabled = false;
    }
  }),
);
$("#attach-file").addEventListener(
  "change",
  guarded(async (event) => {
    const file = event.target.files[0];
    if (!file || !current) return;
    const form = new FormData();
    form.append("file", file);
    form.append("record_id", current.id);
    const image = await api("POST", "/api/v1/images", form);
    event.target.value = "";
    const attachments = [...new Set([...(current.attachments || []), image.id])];
    $("#content").value += `\n\n![](/api/v1/images/${image.id}/content)\n`;
    await saveRecord({ attachments });
  }),
);

// ------------------------------------------------------------------ images

async function loadImages() {
  const images = items(await api("GET", "/api/v1/images?limit=100"));
  $("#gallery").replaceChildren(
    ...images.map((image) =>
      el(
        "figure",
        { "data-id": image.id },
        el("a", { href: `/api/v1/images/${image.id}/content`, target: "_blank" }, el("img", { src: `/api/v1/images/${image.id}/thumbnail`, alt: "", loading: "lazy" })),
        el("button", {
          text: "✕",
          title: t("images.delete"),
          onclick: guarded(async () => {
            await api("DELETE", `/api/v1/images/${image.id}`);
            await loadImages();
          }),
        }),
      ),
    ),
  );
  $("#images-empty").hidden = images.length > 0;
}

$("#upload-form").addEventListener(
  "submit",
  guarded(async (event) => {
    event.preventDefault();
    const file = $("#image-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    await api("POST", "/api/v1/images", form);
    $("#image-file").value = "";
    await loadImages();
  }),
);

// ------------------------------------------------------------------ chat

let chatId = null;

async function loadChatSessions() {
  const sessions = items(await api("GET", "/api/v1/chat/sessions"));
  $("#chat-sessions").replaceChildren(
    ...sessions.map((s) =>
      el(
        "li",
        { "data-id": s.id },
        el("a", { href: `#/chat/${s.id}`, class: s.id === chatId ? "active" : "", text: s.title || t("chat.untitled") }),
        el("button", {
          class: "icon",
          text: "✕",
          title: t("chat.delete"),
          onclick: guarded(async () => {
            if (!confirm(t("chat.confirm_delete"))) return;
            await api("DELETE", `/api/v1/chat/sessions/${s.id}`);
            if (s.id === chatId) location.hash = "#/chat";
            else await loadChatSessions();
          }),
        }),
      ),
    ),
  );
  return sessions;
}

function chatMessage(role, text) {
  const node = el("div", { class: `message ${role}`, "data-role": role, text });
  $("#chat-log").append(node);
  $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
  return node;
}

async function openChat(id) {
  chatId = id;
  await loadChatSessions();
  $("#chat-log").replaceChildren();
  if (!id) {
    $("#chat-log").append(el("p", { class: "muted", text: t("chat.empty") }));
    return;
  }
  const session = await api("GET", `/api/v1/chat/sessions/${id}`);
  for (const message of session.messages || []) chatMessage(message.role, message.content);
}

// Reads a text/event-stream body and calls onEvent(name, data) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

// POSTs `body` as JSON and calls onEvent(name, payload) per event of the text/event-stream answer;
// an HTTP error throws ApiError.
async function postEvents(path, body, onEvent) {
  const response = await api("POST", path, body, { raw: true });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  await readEvents(response, (name, data) => onEvent(name, JSON.parse(data)));
}

// Enter submits the form, Shift+Enter (or an IME composition) keeps typing.
function submitOnEnter(textarea, form) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

async function sendChat(text) {
  if (!chatId) {
    const session = await api("POST", "/api/v1/chat/sessions", { title: text.slice(0, 60) });
    chatId = session.id;
    history.replaceState(null, "", `#/chat/${chatId}`);
    $("#chat-log").replaceChildren();
  }
  chatMessage("user", text);
  const reply = chatMessage("assistant", "");
  reply.dataset.state = "streaming";
  try {
    await postEvents(`/api/v1/chat/sessions/${chatId}/messages`, { content: text, stream: true }, (name, payload) => {
      if (name === "delta") reply.textContent += payload.content || "";
      else if (name === "done") reply.dataset.state = "done";
      else if (name === "error") {
        reply.classList.add("error");
        reply.dataset.state = "error";
        reply.textContent += (reply.textContent ? "\n" : "") + errorText(payload);
      }
      $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    reply.classList.add("error");
    reply.dataset.state = "error";
    reply.textContent = error.message;
    return;
  }
  if (reply.dataset.state === "streaming") reply.dataset.state = "done";
  await loadChatSessions();
}

$("#chat-form").addEventListener(
  "submit",
  guarded(async (event) => {
    event.preventDefault();
    const text = $("#chat-input").value.trim();
    if (!text) return;
    $("#chat-input").value = "";
    $("#chat-send").disabled = true;
    try {
      await sendChat(text);
    } finally {
      $("#chat-send").disabled = false;
    }
  }),
);
submitOnEnter($("#chat-input"), $("#chat-form"));
$("#new-chat").addEventListener("click", () => {
  location.hash = "#/chat";
  openChat(null).catch(flash);
});

// ------------------------------------------------------------------ ask my records

let indexTimer = null;

// "12 of 12 records indexed · 3 waiting", polled while records wait and the view is open.
async function loadIndexStatus() {
  clearTimeout(indexTimer);
  const status = await api("GET", "/api/v1/index/status");
  const parts = status.records
    ? [t("ask.index_status", { indexed: status.indexed, records: status.records })]
    : [t("ask.index_empty")];
  if (status.pending) parts.push(t("ask.index_pending", { count: status.pending }));
  if (status.failed) parts.push(t("ask.index_failed", { count: status.failed }));
  $("#index-status").textContent = parts.join(" · ");
  $("#index-status").dataset.pending = String(status.pending);
  if (status.pending && currentView === "ask") indexTimer = setTimeout(guarded(loadIndexStatus), 2000);
}

function askState(text, { error = false } = {}) {
  const line = $("#ask-state");
  line.textContent = text || "";
  line.hidden = !text;
  line.classList.toggle("error", error);
  line.classList.toggle("muted", !error);
}

// The answer as text nodes; each [n] naming a retrieved source becomes a link to that record which,
// once the sources are listed, scrolls to its entry. The model's text never becomes HTML.
function renderAnswer(text, sources) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d{1,3})\]/g)) {
    const n = Number(match[1]);
    const source = sources.get(n);
    if (!source) continue;
    nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(
      el("a", {
        class: "cite",
        href: `#/records/${source.record_id}`,
        "data-n": String(n),
        title: source.title || "",
        text: match[0],
        onclick: (event) => {
          const entry = document.getElementById(`ask-source-${n}`);
          if (!entry) return; // not listed (yet): the link opens the record
          event.preventDefault();
          document.querySelectorAll("#ask-sources li").forEach((li) => li.classList.toggle("highlight", li === entry));
          entry.scrollIntoView({ behavior: "smooth", block: "nearest" });
          entry.querySelector("a").focus({ preventScroll: true });
        },
      }),
    );
    last = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(last)));
  $("#ask-answer").replaceChildren(...nodes);
}

function sourceItem(source) {
  return el(
    "li",
    { id: `ask-source-${source.n}`, "data-record-id": source.record_id },
    el("span", { class: "cite-n", text: `[${source.n}]` }),
    el(
      "div",
      { class: "source-body" },
      el("a", { href: `#/records/${source.record_id}`, text: source.title || "—" }),
      el("div", { class: "muted small", text: source.snippet || "" }),
    ),
  );
}

function showSources(citations) {
  $("#ask-sources").replaceChildren(...citations.map(sourceItem));
  $("#ask-no-sources").hidden = citations.length > 0;
  $("#ask-sources-box").hidden = false;
}

async function askRecords(question) {
  const answer = $("#ask-answer");
  let sources = new Map();
  let text = "";
  answer.replaceChildren();
  answer.hidden = true;
  answer.dataset.state = "retrieving";
  $("#ask-sources-box").hidden = true;
  askState(t("ask.searching"));
  const failed = (message) => {
    answer.dataset.state = "error";
    answer.hidden = !text;
    askState(message, { error: true });
  };
  try {
    await postEvents("/api/v1/ask", { question, stream: true }, (name, payload) => {
      if (name === "citations") {
        sources = new Map((payload.sources || []).map((source) => [source.n, source]));
        answer.dataset.state = "streaming";
        askState(t("ask.writing"));
      } else if (name === "delta") {
        text += payload.content || "";
        answer.hidden = false;
        renderAnswer(text, sources);
      } else if (name === "done") {
        answer.dataset.state = "done";
        askState(null);
        showSources(payload.citations || []);
      } else if (name === "error") {
        failed(errorText(payload));
      }
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    failed(error.message);
    return;
  }
  if (!["done", "error"].includes(answer.dataset.state)) failed(t("error.generic")); // the stream was cut
}

$("#ask-form").addEventListener(
  "submit",
  guarded(async (event) => {
    event.preventDefault();
    const question = $("#ask-input").value.trim();
    if (!question) return;
    $("#ask-send").disabled = true;
    try {
      await askRecords(question);
    } finally {
      $("#ask-send").disabled = false;
    }
  }),
);
submitOnEnter($("#ask-input"), $("#ask-form"));

// ------------------------------------------------------------------ generation tasks

const TERMINAL = new Set(["succeeded", "partial", "failed", "cancelled"]);
let genTimer = null;

function taskItem(task) {
  const fraction = Math.min(1, Number(task.progress || 0) / 100); // progress is a percentage
  return el(
    "li",
    { class: "card", "data-id": task.id, "data-status": task.status },
    el("div", {}, el("strong", { text: t(`status.${task.status}`) }), document.createTextNode(" · " + task.prompt)),
    el("progress", { max: "1", value: String(fraction) }),
    el(
      "div",
      { class: "gallery" },
      ...(task.results || [])
        .filter((r) => r.image_id)
        .map((r) => el("figure", {}, el("img", { src: `/api/v1/images/${r.image_id}/thumbnail`, alt: "" }))),
    ),
    TERMINAL.has(task.status)
      ? null
      : el("button", { text: t("gen.cancel"), onclick: guarded(async () => { await api("POST", `/api/v1/generations/${task.id}/cancel`); await loadTasks(); }) }),
  );
}

async function loadTasks() {
  clearTimeout(genTimer);
  const tasks = items(await api("GET", "/api/v1/generations?limit=20"));
  $("#gen-tasks").replaceChildren(...tasks.map(taskItem));
  $("#gen-empty").hidden = tasks.length > 0;
  if (tasks.some((task) => !TERMINAL.has(task.status)) && currentView === "gen") {
    genTimer = setTimeout(guarded(loadTasks), 1000);
  }
}

$("#gen-form").addEventListener(
  "submit",
  guarded(async (event) => {
    event.preventDefault();
    await api("POST", "/api/v1/generations", { prompt: $("#gen-prompt").value.trim(), n: Number($("#gen-n").value) });
    $("#gen-prompt").value = "";
    await loadTasks();
  }),
);

// ------------------------------------------------------------------ routing

let currentView = null;

function show(view) {
  currentView = view;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  const tab = view === "editor" ? "records" : view;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.view === tab);
}

async function route() {
  flash(null);
  const [, section = "records", id] = (location.hash || "#/records").split("/");
  if (section === "records" && id) {
    show("editor");
    fillEditor(id === "new" ? null : await api("GET", `/api/v1/records/${id}`));
    await loadRelated(current);
  } else if (section === "images") {
    show("images");
    await loadImages();
  } else if (section === "chat") {
    show("chat");
    await openChat(id || null);
  } else if (section === "ask") {
    show("ask");
    await loadIndexStatus();
  } else if (section === "gen") {
    show("gen");
    await loadTasks();
  } else {
    show("records");
    await loadRecords();
  }
}

window.addEventListener("hashchange", guarded(route));
guarded(route)();
