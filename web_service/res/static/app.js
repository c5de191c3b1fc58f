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

// The text shown for an error body (an HTTP answer's, or an SSE `error` event's data): validation
// errors name the field in the UI's words, never the schema's text; other errors keep the server's
// sentence in English and say what the code means in Chinese (the server speaks English only).
const known = (key) => Object.prototype.hasOwnProperty.call(boot.i18n, key);

function validationText(detail) {
  const fields = (Array.isArray(detail) ? detail : []).map((item) => item?.loc?.at?.(-1)).filter((f) => typeof f === "string");
  const field = fields.find((name) => known(`field.${name}`));
  return field ? t("error.field_invalid", { field: t(`field.${field}`) }) : t("error.code.validation_error");
}

function errorText(body, status) {
  const code = body?.code;
  if (code === "validation_error") return validationText(body.detail);
  if (boot.lang !== "en" && code && known(`error.code.${code}`)) return t(`error.code.${code}`);
  if (typeof body?.detail === "string") return body.detail;
  if (code && known(`error.code.${code}`)) return t(`error.code.${code}`);
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

const when = (iso) => new Date(iso).toLocaleString(boot.lang);
const items = (page) => (Array.isArray(page) ? page : page?.data || page?.items || []);

function flash(error) {
  const box = $("#flash");
  box.textContent = error ? error.message || String(error) : "";
  box.hidden = !error;
  if (error) setTimeout(() => (box.hidden = true), 6000);
}

// Thrown when the failure is already on screen (the conflict view): it stops the caller, flashes nothing.
class Shown extends Error {}

function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (error) {
      if (!(error instanceof Shown) && !(error instanceof ApiError && error.status === 401)) flash(error);
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

// Markdown reduced to its words for one-line excerpts: no heading marks, emphasis, link syntax or list bullets.
function plainText(markdown) {
  return markdown
    .replace(/```[^\n]*\n?/g, " ")
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+(\[[ xX]\]\s+)?|\d+[.)]\s+)/gm, "")
    .replace(/(\*\*|__|~~|\*|`)/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

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
        : el("div", { class: "excerpt", text: plainText((record.summary || record.content || "").slice(0, 400)).slice(0, 160) }),
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
  $("#records-empty").textContent = recordsState.q || recordsState.tag ? t("records.no_match") : t("records.empty");
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
let savedFields = null; // the editor's fields as last loaded or saved (JSON), null when nothing is open

const fieldsKey = () => JSON.stringify(editorFields());
const editorDirty = () => currentView === "editor" && savedFields !== null && fieldsKey() !== savedFields;

let stateBeforeEdit = { text: "", title: "" }; // the save's word the marker covers, back when the edit is undone

// The editor's marker: "● Edited" while the fields differ from what was saved, else the last save's word.
function showDirty() {
  const dirty = editorDirty();
  const state = $("#save-state");
  const marked = state.textContent === t("editor.unsaved");
  $("#view-editor").dataset.dirty = String(dirty);
  if (dirty && !marked) {
    stateBeforeEdit = { text: state.textContent, title: state.title };
    state.textContent = t("editor.unsaved");
    state.title = t("editor.unsaved_hint");
  } else if (!dirty && marked) {
    state.textContent = stateBeforeEdit.text;
    state.title = stateBeforeEdit.title;
  }
}

function markSaved(key = fieldsKey()) {
  savedFields = key;
  showDirty();
}

for (const field of ["#title", "#content", "#tags"]) $(field).addEventListener("input", showDirty);

function fillEditor(record) {
  current = record;
  $("#title").value = record?.title || "";
  $("#content").value = record?.content || "";
  $("#tags").value = (record?.tags || []).join(", ");
  $("#record-actions").hidden = !record;
  $("#save-state").textContent = "";
  $("#save-state").title = "";
  showEditorTab("edit");
  renderRecordMeta();
  markSaved();
}

function renderRecordMeta() {
  const record = current;
  $("#view-editor").dataset.version = record ? String(record.version) : "";
  $("#history-toggle").disabled = !record;
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
  const sentKey = fieldsKey(); // typing while the save is on its way stays "edited"
  let merged = false;
  try {
    if (!current) {
      current = await api("POST", "/api/v1/records", fields);
      history.replaceState(null, "", `#/records/${current.id}`);
    } else {
      current = await api("PATCH", `/api/v1/records/${current.id}`, { ...fields, version: current.version });
      merged = current.merged === true;
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      const latest = error.body?.record || error.body?.current || (await api("GET", `/api/v1/records/${current.id}`));
      if (error.body?.conflict) {
        showConflict(latest, error.body.conflict); // the editor keeps the user's text
        throw new Shown();
      }
      fillEditor(latest);
      throw new Error(t("error.conflict"));
    }
    throw error;
  }
  hideConflict();
  if (merged) fillEditor(current); // the text now holds the other side's changes too
  $("#record-actions").hidden = false;
  $("#save-state").textContent = merged ? t("editor.merged") : t("editor.saved");
  $("#save-state").title = merged ? t("editor.merged_hint") : "";
  renderRecordMeta();
  if (!merged) markSaved(sentKey);
  if (!$("#history-box").hidden) await loadHistory();
}

// ------------------------------------------------------------------ history and conflicts (docs/api.md §16)

const HISTORY_PAGE = 20;
const historyState = { offset: 0, selected: null };

function revisionItem(revision) {
  const name =
    revision.kind === "stale_edit"
      ? t("history.stale_edit", { revision: revision.revision, version: revision.version })
      : t("history.version", { revision: revision.revision, version: revision.version });
  return el(
    "li",
    { "data-revision": String(revision.revision), "data-kind": revision.kind, class: historyState.selected === revision.revision ? "active" : "" },
    el(
      "button",
      { class: "revision", onclick: guarded(() => showDiff(revision.revision)) },
      el("span", { class: "revision-name", text: name }),
      el("span", { class: "revision-title", text: revision.title || "—" }),
      el("span", { class: "muted small", text: [when(revision.created_at), revision.device].filter(Boolean).join(" · ") }),
    ),
  );
}

async function loadHistory({ more = false } = {}) {
  const record = current;
  historyState.offset = more ? historyState.offset + HISTORY_PAGE : 0;
  const params = new URLSearchParams({ limit: String(HISTORY_PAGE), offset: String(historyState.offset) });
  const page = await api("GET", `/api/v1/records/${record.id}/revisions?${params}`);
  if (current?.id !== record.id) return; // another record was opened meanwhile
  const list = $("#history-list");
  const revisions = items(page).map(revisionItem);
  if (more) list.append(...revisions);
  else list.replaceChildren(...revisions);
  $("#history-more").hidden = !page?.has_more;
  $("#history-empty").hidden = list.children.length > 0;
}

function closeHistory() {
  historyState.selected = null;
  $("#history-box").hidden = true;
  $("#history-diff").hidden = true;
  $("#history-list").replaceChildren();
  $("#history-toggle").setAttribute("aria-expanded", "false");
  $("#history-toggle").classList.remove("active");
}

const DIFF_SIGN = { add: "+", delete: "−", context: " " };

function diffHunk(hunk) {
  return el(
    "div",
    { class: "diff-hunk" },
    el("div", { class: "diff-head", text: `@@ −${hunk.old_start},${hunk.old_lines} +${hunk.new_start},${hunk.new_lines} @@` }),
    ...hunk.lines.map((line) =>
      el(
        "div",
        { class: `diff-line ${line.op}`, "data-op": line.op },
        el("span", { class: "diff-sign", text: DIFF_SIGN[line.op] || " " }),
        el("span", { class: "diff-text", text: line.text.replace(/\r?\n$/, "") }),
      ),
    ),
  );
}

// From the chosen revision to the record now, coloured from the structured hunks (text nodes only).
async function showDiff(revision) {
  const record = current;
  const diff = await api("GET", `/api/v1/records/${record.id}/revisions/${revision}/diff?against=current`);
  if (current?.id !== record.id) return;
  historyState.selected = revision;
  document.querySelectorAll("#history-list li").forEach((li) => li.classList.toggle("active", li.dataset.revision === String(revision)));
  $("#diff-title").textContent = t("history.diff_title", { revision, version: diff.new.version });
  const meta = [];
  if (diff.old.title !== diff.new.title) meta.push(t("history.title_change", { old: diff.old.title || "—", new: diff.new.title || "—" }));
  const tags = (side) => side.tags.map((tag) => "#" + tag).join(" ") || "—";
  if (tags(diff.old) !== tags(diff.new)) meta.push(t("history.tags_change", { old: tags(diff.old), new: tags(diff.new) }));
  $("#diff-meta").textContent = meta.join(" · ");
  $("#diff-meta").hidden = !meta.length;
  $("#diff-lines").replaceChildren(...diff.hunks.map(diffHunk));
  $("#diff-same").hidden = diff.hunks.length > 0;
  $("#history-diff").dataset.revision = String(revision);
  $("#history-diff").hidden = false;
}

$("#history-toggle").addEventListener(
  "click",
  guarded(async () => {
    if (!$("#history-box").hidden) return closeHistory();
    $("#history-box").hidden = false;
    $("#history-toggle").setAttribute("aria-expanded", "true");
    $("#history-toggle").classList.add("active");
    await loadHistory();
    $("#history-box").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }),
);
$("#history-more").addEventListener("click", guarded(() => loadHistory({ more: true })));
$("#history-restore").addEventListener(
  "click",
  guarded(async (event) => {
    const button = event.currentTarget;
    const revision = historyState.selected;
    button.disabled = true;
    try {
      const restored = await api("POST", `/api/v1/records/${current.id}/revisions/${revision}/restore`);
      hideConflict();
      fillEditor(restored);
      $("#save-state").textContent = t("history.restored", { revision });
      historyState.selected = null;
      $("#history-diff").hidden = true;
      await loadHistory();
    } finally {
      button.disabled = false;
    }
  }),
);

let conflictRecord = null; // the record as it is now, while the conflict view is open

const FIELD_NAMES = () => ({ title: t("conflict.field_title"), content: t("conflict.field_content"), tags: t("conflict.field_tags") });

function conflictText(value) {
  if (value === null || value === undefined || value === "") return t("conflict.empty");
  if (Array.isArray(value)) return value.length ? value.map((tag) => "#" + tag).join(" ") : t("conflict.empty");
  return String(value).replace(/\r?\n$/, "");
}

function conflictHunk(hunk, conflict) {
  const field = FIELD_NAMES()[hunk.field] || hunk.field;
  const side = (name, label, value) =>
    el("div", { class: `conflict-side ${name}`, "data-side": name }, el("div", { class: "small conflict-label", text: label }), el("pre", { text: conflictText(value) }));
  return el(
    "div",
    { class: "conflict-hunk", "data-field": hunk.field },
    el("div", { class: "small", text: hunk.base_line ? t("conflict.at_line", { field, line: hunk.base_line }) : field }),
    el(
      "div",
      { class: "conflict-sides" },
      side("theirs", t("conflict.theirs", { version: conflict.theirs.version }), hunk.theirs),
      side("yours", t("conflict.yours"), hunk.yours),
    ),
  );
}

function showConflict(record, conflict) {
  conflictRecord = record;
  $("#conflict-hunks").replaceChildren(...conflict.hunks.map((hunk) => conflictHunk(hunk, conflict)));
  $("#conflict-box").hidden = false;
  $("#save-state").textContent = "";
  showDirty();
  $("#conflict-box").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function hideConflict() {
  conflictRecord = null;
  $("#conflict-box").hidden = true;
  $("#conflict-hunks").replaceChildren();
}

// Keep mine: the editor's text saved over the record as it is now (theirs stays in the history).
$("#conflict-mine").addEventListener(
  "click",
  guarded(async () => {
    current = conflictRecord;
    await saveRecord();
  }),
);
$("#conflict-theirs").addEventListener("click", () => {
  fillEditor(conflictRecord);
  hideConflict();
});

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
    savedFields = null; // nothing left to lose
    location.hash = "#/records";
  }),
);

// ------------------------------------------------------------------ trash

const TRASH_PAGE = 50;
const trashState = { offset: 0 };

function trashItem(item) {
  return el(
    "li",
    { class: "record-item trash-item", "data-id": item.id },
    el(
      "div",
      { class: "trash-body" },
      el("div", { class: "record-title", text: item.title || "—" }),
      el("div", { class: "muted small", text: t("trash.deleted", { when: when(item.deleted_at), until: new Date(item.purge_after).toLocaleDateString(boot.lang) }) }),
      el("div", {}, ...(item.tags || []).map((tag) => el("span", { class: "tag", text: "#" + tag }))),
    ),
    el("button", {
      class: "undelete",
      text: t("trash.restore"),
      onclick: guarded(async (event) => {
        event.currentTarget.disabled = true;
        const record = await api("POST", `/api/v1/records/${item.id}/restore`);
        location.hash = `#/records/${record.id}`;
      }),
    }),
  );
}

async function loadTrash({ more = false } = {}) {
  trashState.offset = more ? trashState.offset + TRASH_PAGE : 0;
  const params = new URLSearchParams({ limit: String(TRASH_PAGE), offset: String(trashState.offset) });
  const page = await api("GET", "/api/v1/records/trash?" + params);
  const list = $("#trash-list");
  if (more) list.append(...items(page).map(trashItem));
  else list.replaceChildren(...items(page).map(trashItem));
  $("#trash-more").hidden = !page?.has_more;
  $("#trash-empty").hidden = list.children.length > 0;
}

$("#trash-more").addEventListener("click", guarded(() => loadTrash({ more: true })));
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
      showDirty(); // filled in, not saved yet
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
// The conversation open last, so that coming back to Chat (or reloading) brings it back.
const LAST_CHAT_KEY = `sra.last-chat.${boot.username}`;
const lastChat = {
  get: () => {
    try {
      return localStorage.getItem(LAST_CHAT_KEY);
    } catch {
      return null;
    }
  },
  set: (id) => {
    try {
      if (id) localStorage.setItem(LAST_CHAT_KEY, id);
      else localStorage.removeItem(LAST_CHAT_KEY);
    } catch {
      // storage off (private mode): Chat starts empty instead
    }
  },
};

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
            if (s.id === lastChat.get()) lastChat.set(null);
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

async function openChat(id, { resume = false } = {}) {
  if (!id && resume) {
    const last = lastChat.get();
    if (last) {
      history.replaceState(null, "", `#/chat/${last}`);
      try {
        return await openChat(last);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
        lastChat.set(null); // deleted or expired meanwhile
        history.replaceState(null, "", "#/chat");
      }
    }
  }
  chatId = id;
  if (id) lastChat.set(id);
  await loadChatSessions();
  $("#chat-log").replaceChildren();
  if (!id) {
    $("#chat-log").append(el("p", { class: "muted", text: t("chat.empty") }));
    return;
  }
  const session = await api("GET", `/api/v1/chat/sessions/${id}`);
  for (const message of session.messages || []) chatMessage(message.role, message.content);
  const last = (session.messages || []).at(-1);
  if (last && (last.role === "user" || last.incomplete)) {
    const node = last.role === "user" ? chatMessage("assistant", "") : $("#chat-log").lastElementChild;
    failedReply(node, t("chat.reply_missing"));
  }
}

// A reply that failed or was cut: its error and a button asking for it again (POST .../retry).
function failedReply(reply, message) {
  reply.classList.add("error");
  reply.dataset.state = "error";
  if (message) reply.textContent += (reply.textContent ? "\n" : "") + message;
  reply.append(
    el("button", {
      class: "retry",
      text: t("chat.retry"),
      onclick: guarded(async (event) => {
        event.currentTarget.remove();
        reply.replaceChildren();
        reply.classList.remove("error");
        await streamReply(reply, `/api/v1/chat/sessions/${chatId}/retry`, { stream: true });
      }),
    }),
  );
}

// Streams a reply into `reply` (an assistant message node) from `path`.
async function streamReply(reply, path, body) {
  reply.dataset.state = "streaming";
  let failure = null;
  try {
    await postEvents(path, body, (name, payload) => {
      if (name === "delta") reply.textContent += payload.content || "";
      else if (name === "done") reply.dataset.state = "done";
      else if (name === "error") failure = errorText(payload);
      $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    failure = error.message;
  }
  if (failure === null && reply.dataset.state !== "done") failure = t("error.generic"); // the stream was cut
  if (failure !== null) failedReply(reply, failure);
  await loadChatSessions(); // a first message's conversation is listed even when its reply failed
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
  lastChat.set(chatId);
  await streamReply(chatMessage("assistant", ""), `/api/v1/chat/sessions/${chatId}/messages`, { content: text, stream: true });
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
  lastChat.set(null);
  if (location.hash !== "#/chat") location.hash = "#/chat"; // the router opens an empty chat
  else openChat(null).catch(flash);
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
  const tab = view === "editor" || view === "trash" ? "records" : view;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.view === tab);
}

async function route() {
  flash(null);
  const [, section = "records", id] = (location.hash || "#/records").split("/");
  if (section === "records" && id) {
    show("editor");
    closeHistory();
    hideConflict();
    fillEditor(id === "new" ? null : await api("GET", `/api/v1/records/${id}`));
    await loadRelated(current);
  } else if (section === "trash") {
    show("trash");
    await loadTrash();
  } else if (section === "images") {
    show("images");
    await loadImages();
  } else if (section === "chat") {
    show("chat");
    await openChat(id || null, { resume: true });
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

// Leaving the editor with unsaved changes asks first: in the app (the hash changes) and for the tab.
window.addEventListener(
  "hashchange",
  guarded(async (event) => {
    if (editorDirty() && !confirm(t("editor.confirm_leave"))) {
      history.replaceState(null, "", new URL(event.oldURL).hash || "#/records"); // stay, without another hashchange
      return;
    }
    await route();
  }),
);
window.addEventListener("beforeunload", (event) => {
  if (!editorDirty()) return;
  event.preventDefault();
  event.returnValue = "";
});
guarded(route)();
