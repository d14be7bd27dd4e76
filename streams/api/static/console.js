// Lookout console: one page over the worker's own API (no build step, no framework).
//
// Safety rules this file keeps: every piece of data reaches the page through textContent
// or an attribute set with setAttribute on a fixed name (never innerHTML); the API token
// lives in sessionStorage and travels only in the Authorization header (never in a URL,
// never in a cookie); thumbnails are fetched with that header and shown from blob: URLs.

const TOKEN_KEY = "lookout.token";
const MAX_CARDS = 500;
const VIEWS = ["live", "alert", "search", "queries", "status"];

const $ = (selector) => document.querySelector(selector);

// ---- DOM helpers ----------------------------------------------------------------------

/** An element with a class and children; strings become text nodes (never parsed as HTML). */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children.filter((c) => c !== null && c !== undefined).map(
    (c) => (c instanceof Node ? c : String(c))));
  return node;
}

/** A <dl> of [term, value] pairs. */
function facts(pairs) {
  const dl = el("dl", "facts");
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(el("dt", null, term), el("dd", null, value));
  }
  return dl;
}

const fmtTime = (ms) => (Number.isFinite(ms) ? new Date(ms).toLocaleString() : "");
const fmtScore = (x) => (typeof x === "number" ? x.toFixed(3) : String(x));

function fmtLatency(ms) {
  if (!Number.isFinite(ms)) return "";
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  if (Math.abs(ms) < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

// ---- API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let tokenWaiters = [];

function askToken() {
  $("#token-form").hidden = false;
  $("#conn").textContent = "needs the API token";
  $("#token").focus();
}

/** Resolves once a token has been typed in (for the stream, which retries after a 401). */
const tokenGiven = () => new Promise((resolve) => tokenWaiters.push(resolve));

/** fetch() against the worker with the bearer token, no cookies; a 401 asks for a token. */
async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const sent = new Headers(headers);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) sent.set("Authorization", `Bearer ${token}`);
  let payload;
  if (body !== undefined) {
    sent.set("Content-Type", "application/json");
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, {
    method, headers: sent, body: payload, signal, credentials: "omit", cache: "no-store",
  });
  if (resp.status === 401) {
    askToken();
    throw new ApiError(401, "this worker needs its API token");
  }
  return resp;
}

/** The JSON body of an API call; an error status becomes an ApiError with its message. */
async function apiJson(path, options) {
  const resp = await api(path, options);
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`);
  }
  return data;
}

/** Evidence bytes behind the token (a thumbnail, a clip) into `node` from a blob: URL;
 * `missing(text)` says why there is nothing to show. The element says where its bytes came
 * from and their type (`data-source`, `data-type`): the CSP lets nothing fetch a blob: URL
 * again to find out. */
async function loadEvidence(node, url, missing) {
  if (typeof url !== "string" || !url.startsWith("/items/")) return;
  try {
    const resp = await api(url);
    if (!resp.ok) {
      missing("no longer kept");
      return;
    }
    const blob = await resp.blob();
    node.dataset.source = url;
    node.dataset.type = blob.type;
    node.src = URL.createObjectURL(blob);
  } catch (e) {
    missing(e.message);
  }
}

/** Shows an item's thumbnail; the blob: URL is freed once the image has it. */
function loadThumb(img, url) {
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  loadEvidence(img, url, (why) => { img.alt = `thumbnail ${why}`; });
}

/** What an item shows a person: its frame, its log line, or why there is nothing; a
 * composite alert shows each member's own. */
function evidenceNode(modality, evidence) {
  if (modality === "composite") return compositeEvidence(evidence);
  const box = el("div", "evidence");
  if (evidence && evidence.thumb_url) {
    const img = el("img", "thumb");
    img.alt = "frame thumbnail";
    box.append(img);
    loadThumb(img, evidence.thumb_url);
  } else if (evidence && typeof evidence.text === "string") {
    box.append(el("pre", "logline", evidence.text));
  } else if (evidence && evidence.audio_url) {
    const player = el("audio", "clip");
    player.controls = true;
    player.preload = "auto";
    box.append(player);
    loadClip(player, evidence.audio_url);
  } else if (modality === "audio") {
    box.append(el("p", "muted", "audio chunk (no clip kept: LOOKOUT_AUDIO_CLIP_RATE_HZ=0)"));
  }
  return box;
}

/** A composite alert's evidence: where (its group), then one row per member hit with the
 * member's query, modality, event time, score, source and its own evidence. */
function compositeEvidence(evidence) {
  const ev = evidence || {};
  const members = Array.isArray(ev.members) ? ev.members : [];
  const box = el("div", "evidence composite");
  box.append(el("p", "group", `${ev.group_by || "group"}: ${ev.group ?? ""}`));
  const list = el("ol", "members");
  for (const m of members) {
    const row = el("li", "member");
    row.dataset.query = String(m.query_id);
    row.append(facts([
      ["member", queryNames.has(m.query_id) ? `${queryNames.get(m.query_id)} (${m.query_id})`
        : m.query_id],
      ["modality", m.modality], ["event time", fmtTime(m.ts)], ["score", fmtScore(m.score)],
      ["source", m.source],
    ]), evidenceNode(m.modality, m));
    list.append(row);
  }
  box.append(list);
  return box;
}

/** Loads the chunk that matched into an <audio> player (the blob: URL stays valid while
 * the card lives, so the chunk can be replayed). */
function loadClip(player, url) {
  loadEvidence(player, url, (why) => player.replaceWith(el("p", "muted", `audio chunk ${why}`)));
}

// ---- live alerts ----------------------------------------------------------------------

const alerts = new Map(); // alert_id -> alert
const queryNames = new Map(); // query id -> name

/** fnmatch-style glob over the whole source id, case-sensitive (as the server matches). */
function globMatches(glob, value) {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${escaped}$`).test(value);
}

function liveFilter() {
  return {
    query: $("#f-query").value, source: $("#f-source").value.trim(),
    severity: $("#f-severity").value, modality: $("#f-modality").value,
  };
}

function accepts(filter, alert) {
  return (!filter.query || alert.query_id === filter.query)
    && (!filter.severity || alert.severity === filter.severity)
    && (!filter.modality || alert.modality === filter.modality)
    && (!filter.source || globMatches(filter.source, alert.source));
}

function alertCard(alert) {
  const card = el("li", `card sev-${alert.severity}`);
  card.dataset.id = alert.alert_id;
  const title = el("h3", null, alert.query_name || alert.query_id,
                   el("span", "badge", alert.severity), el("span", "badge", alert.modality));
  const link = el("a", null, "Details, feedback");
  link.setAttribute("href", `#alert/${encodeURIComponent(alert.alert_id)}`);
  const meta = el("div", "meta", title, facts([
    ["score", `${fmtScore(alert.score)} (threshold ${fmtScore(alert.threshold)})`],
    ["source", alert.source],
    ["site", alert.site],
    ["event time", fmtTime(alert.ts)],
    ["latency", fmtLatency(alert.detected_at - alert.ts)],
  ]), link);
  card.append(evidenceNode(alert.modality, alert.evidence), meta);
  return card;
}

/** Adds (or ignores a repeat of) an alert; cards stay ordered newest first. */
function addAlert(alert) {
  if (!alert || !alert.alert_id || alerts.has(alert.alert_id)) return;
  alerts.set(alert.alert_id, alert);
  const list = $("#alerts");
  const card = alertCard(alert);
  card.hidden = !accepts(liveFilter(), alert);
  const newer = (node) => alerts.get(node.dataset.id).detected_at >= alert.detected_at;
  const before = [...list.children].find((node) => !newer(node));
  list.insertBefore(card, before || null);
  while (list.children.length > MAX_CARDS) {
    alerts.delete(list.lastElementChild.dataset.id);
    list.lastElementChild.remove();
  }
  updateLiveCount();
}

function applyLiveFilter() {
  const filter = liveFilter();
  for (const card of $("#alerts").children) card.hidden = !accepts(filter, alerts.get(card.dataset.id));
  updateLiveCount();
}

function updateLiveCount() {
  const cards = [...$("#alerts").children];
  const shown = cards.filter((c) => !c.hidden).length;
  $("#live-empty").hidden = cards.length > 0;
  $("#live-count").textContent = cards.length ? `${shown} of ${cards.length} shown` : "";
}

/** Parses one SSE block (lines without the blank separator) into {id, event, data, comment}. */
function parseEvent(block) {
  const ev = { id: null, event: "message", data: [], comments: [] };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) { ev.comments.push(line.slice(1).trim()); continue; }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") ev.id = value;
    else if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
  }
  return ev;
}

/**
 * `GET /alerts/stream` read with fetch() (EventSource cannot send the Authorization header).
 * It reconnects with backoff and sends the last id seen as Last-Event-ID, so the worker
 * replays what was missed meanwhile.
 */
class AlertStream {
  constructor(onAlert, onConnected) {
    this.onAlert = onAlert;
    this.onConnected = onConnected;
    this.lastId = null;
    this.backoffMs = 1000;
  }

  async run() {
    for (;;) {
      try {
        await this.readOnce();
        setConn("stream closed; reconnecting", false);
      } catch (e) {
        if (e.status === 401) await tokenGiven();
        setConn(`stream: ${e.message}; reconnecting`, false);
      }
      await new Promise((r) => setTimeout(r, this.backoffMs));
      this.backoffMs = Math.min(this.backoffMs * 2, 15_000);
    }
  }

  async readOnce() {
    const headers = { Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const resp = await api("/alerts/stream", { headers });
    if (!resp.ok) throw new ApiError(resp.status, `HTTP ${resp.status}`);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.handle(parseEvent(buffer.slice(0, end)));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  handle(ev) {
    if (ev.comments.includes("connected")) {
      this.backoffMs = 1000;
      setConn("live", true);
      this.onConnected();
    }
    if (ev.event !== "alert" || !ev.data.length) return;
    if (ev.id) this.lastId = ev.id;
    try {
      this.onAlert(JSON.parse(ev.data.join("\n")));
    } catch (e) {
      showError(`unreadable alert event: ${e.message}`);
    }
  }
}

function setConn(text, live) {
  const conn = $("#conn");
  conn.textContent = text;
  conn.classList.toggle("live", live);
}

/** The recent history, once per (re)connection: cards survive a reload of the page. */
async function loadRecentAlerts() {
  try {
    const data = await apiJson("/alerts?limit=100");
    for (const alert of data.alerts.reverse()) addAlert(alert);
  } catch (e) {
    if (e.status !== 401) showError(`alert history: ${e.message}`);
  }
}

/** Standing and composite queries: their names (cards, member rows) and the live view's
 * query filter, composites in a group of their own. Returns both lists. */
async function loadQueryNames() {
  const [plain, comp] = await Promise.all([apiJson("/queries"), apiJson("/composites")]);
  const select = $("#f-query");
  const chosen = select.value;
  const option = (q, label) => {
    queryNames.set(q.id, q.name);
    const node = el("option", null, label);
    node.value = q.id;
    return node;
  };
  select.replaceChildren(el("option", null, "any"));
  select.firstChild.value = "";
  select.append(...plain.queries.map((q) => option(q, `${q.name} (${q.id})`)));
  if (comp.composites.length) {
    const group = el("optgroup");
    group.label = "composite queries";
    group.append(...comp.composites.map((c) => option(c, `${c.name} (${c.id}, composite)`)));
    select.append(group);
  }
  select.value = chosen;
  return { queries: plain.queries, composites: comp.composites };
}

// ---- alert detail ---------------------------------------------------------------------

let detailId = null;

async function findAlert(id) {
  if (alerts.has(id)) return alerts.get(id);
  const data = await apiJson("/alerts?limit=1000");
  return data.alerts.find((a) => a.alert_id === id) || null;
}

async function showAlert(id) {
  detailId = id;
  const box = $("#alert-detail");
  $("#fb-result").textContent = "";
  $("#neighbours").replaceChildren();
  $("#neighbours-note").textContent = "";
  const alert = await findAlert(id);
  if (!alert) {
    box.replaceChildren(el("p", "muted", `alert ${id} is not in this worker's history`));
    return;
  }
  const incident = alert.incident || {};
  box.replaceChildren(
    el("h2", null, alert.query_name || alert.query_id, el("span", "badge", alert.severity)),
    evidenceNode(alert.modality, alert.evidence),
    facts([
      ["score", fmtScore(alert.score)], ["threshold", fmtScore(alert.threshold)],
      ["source", alert.source], ["site", alert.site], ["modality", alert.modality],
      ["event time", fmtTime(alert.ts)], ["detected", fmtTime(alert.detected_at)],
      ["latency", fmtLatency(alert.detected_at - alert.ts)],
      ["incident start", fmtTime(incident.start)], ["incident end", fmtTime(incident.end)],
      ["incident peak", incident.peak === undefined ? "" : fmtScore(incident.peak)],
      ["labels", Object.entries(alert.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["item", alert.item_key], ["alert id", alert.alert_id],
    ]),
  );
  loadNeighbours(alert);
}

async function loadNeighbours(alert) {
  if (alert.modality === "composite") {  // no item of its own: its members' are shown above
    $("#neighbours-note").textContent = "a composite alert: each member's evidence is above";
    return;
  }
  const params = new URLSearchParams({ modality: alert.modality, item_key: alert.item_key, k: "7" });
  try {
    const data = await apiJson(`/search?${params}`);
    const others = data.results.filter((hit) => hit.key !== alert.item_key).slice(0, 6);
    $("#neighbours").replaceChildren(...others.map((hit) => hitCard(data.modality, hit)));
    $("#neighbours-note").textContent = others.length ? "" : "no other items near this one";
  } catch (e) {
    $("#neighbours-note").textContent = e.status === 404
      ? "the matching item is no longer indexed (past its retention)" : e.message;
  }
}

async function giveFeedback(verdict) {
  if (!detailId) return;
  const result = $("#fb-result");
  result.textContent = "sending";
  try {
    const record = await apiJson(`/alerts/${encodeURIComponent(detailId)}/feedback`,
                                 { method: "POST", body: { verdict } });
    result.textContent = `recorded: ${record.verdict}`
      + (record.learned ? " (the query learned from it)" : " (item expired: not learned)");
  } catch (e) {
    result.textContent = `not recorded: ${e.message}`;
  }
}

// ---- search ---------------------------------------------------------------------------

function hitCard(modality, hit) {
  return el("li", "hit", evidenceNode(modality, hit.evidence),
            el("span", "score", `score ${fmtScore(hit.score)}`),
            facts([["source", hit.source], ["time", fmtTime(hit.ts)]]));
}

/** The chosen file of an <input type=file> as a pattern example, or null. */
async function exampleOf(input) {
  const file = input.files && input.files[0];
  if (!file) return null;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return { payload_b64: btoa(binary), content_type: file.type || "application/octet-stream" };
}

async function runSearch(event) {
  event.preventDefault();
  const summary = $("#search-summary");
  const example = await exampleOf($("#s-example"));
  const text = $("#s-text").value;
  if (!example && !text.trim()) {
    summary.textContent = "give a text or choose an example file";
    return;
  }
  const sources = $("#s-sources").value.trim();
  const k = Number($("#s-k").value || "12");
  summary.textContent = "searching";
  try {
    const data = example
      ? await apiJson("/search", { method: "POST", body: {
        modality: $("#s-modality").value, k, ...example,
        ...(sources ? { sources: sources.split(",").map((s) => s.trim()) } : {}) } })
      : await apiJson(`/search?${new URLSearchParams({
        modality: $("#s-modality").value, text, k: String(k), ...(sources ? { sources } : {}),
      })}`);
    $("#results").replaceChildren(...data.results.map((hit) => hitCard(data.modality, hit)));
    summary.textContent = `${data.results.length} results (${data.modality}, model ${data.model})`;
  } catch (e) {
    $("#results").replaceChildren();
    summary.textContent = `search failed: ${e.message}`;
  }
}

// ---- standing queries -----------------------------------------------------------------

function actionButton(label, onClick) {
  const button = el("button", null, label);
  button.type = "button";
  button.addEventListener("click", onClick);
  return button;
}

function queryRow(q, today) {
  const row = el("tr");
  row.dataset.id = q.id;
  const state = el("span", q.enabled ? "state-on" : "state-off",
                   q.enabled ? "enabled" : "disabled");
  if (q.stale) {  // registered with another model: the worker skips it until re-applied
    state.append(el("span", "stale", " (stale: skipped; run lookout query apply)"));
    state.title = q.stale_reason || "registered with another model";
  }
  const actions = el("td", "actions",
    actionButton(q.enabled ? "Disable" : "Enable", () => changeQuery(q.id, { enabled: !q.enabled })),
    actionButton("Preview", () => previewQuery(q)),
    actionButton("Delete", (e) => confirmDelete(e.target, `/queries/${encodeURIComponent(q.id)}`,
                                                q.id)));
  row.append(el("td", null, q.id), el("td", null, q.name), el("td", null, q.modality),
             el("td", null, q.threshold === "auto" ? "auto" : fmtScore(q.threshold)),
             el("td", null, fmtScore(q.effective_threshold)), el("td", null, state),
             el("td", "today", today === undefined ? "?" : String(today)), actions);
  return row;
}

/** A composite query: its rule, members (by name and id), window, grouping, state. */
function compositeRow(c, today) {
  const row = el("tr");
  row.dataset.id = c.id;
  const rule = c.score ? `${c.mode} (${c.score} score${c.threshold === null || c.threshold
    === undefined ? "" : ` >= ${fmtScore(c.threshold)}`})` : c.mode;
  const members = el("ol", "member-list", ...c.members.map((id) => {
    const item = el("li", null, queryNames.has(id) ? `${queryNames.get(id)} (${id})` : id);
    item.dataset.query = id;
    return item;
  }));
  const state = el("span", c.enabled ? "state-on" : "state-off",
                   c.enabled ? "enabled" : "disabled",
                   c.suppress_members ? "; members raise no alerts of their own" : "");
  const actions = el("td", "actions",
    actionButton("Preview", () => previewComposite(c)),
    actionButton("Delete", (e) => confirmDelete(
      e.target, `/composites/${encodeURIComponent(c.id)}`, c.id)));
  row.append(el("td", null, c.id), el("td", null, c.name), el("td", "rule", rule),
             el("td", "members", members), el("td", "within", `${c.within_s} s`),
             el("td", "group-by", c.group_by), el("td", null, c.severity),
             el("td", null, state),
             el("td", "today", today === undefined ? "?" : String(today)), actions);
  return row;
}

async function loadQueries() {
  try {
    const { queries, composites } = await loadQueryNames();
    const today = await alertsToday();
    const count = (id) => (today.complete ? (today.get(id) || 0) : undefined);
    $("#queries-table tbody").replaceChildren(...queries.map((q) => queryRow(q, count(q.id))));
    $("#composites-table tbody").replaceChildren(
      ...composites.map((c) => compositeRow(c, count(c.id))));
    $("#composites-table").hidden = composites.length === 0;
    $("#composites-empty").hidden = composites.length > 0;
  } catch (e) {
    if (e.status !== 401) $("#query-result").textContent = `queries: ${e.message}`;
  }
}

/** Alerts since local midnight per query id (one history call; `complete` when the history
 * answered, so a query without alerts shows 0 rather than "?"). */
async function alertsToday() {
  const counts = new Map();
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  try {
    const data = await apiJson(`/alerts?since=${midnight.getTime()}&limit=10000`);
    for (const a of data.alerts) counts.set(a.query_id, (counts.get(a.query_id) || 0) + 1);
    counts.complete = true;
  } catch (e) {
    counts.complete = false;
  }
  return counts;
}

async function changeQuery(id, changes) {
  try {
    await apiJson(`/queries/${encodeURIComponent(id)}`, { method: "PATCH", body: changes });
    $("#query-result").textContent = `${id}: ${JSON.stringify(changes)}`;
  } catch (e) {
    $("#query-result").textContent = `${id} not changed: ${e.message}`;
  }
  loadQueries();
}

const SVG = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** The query's background scores as bars, with a red line where the threshold in force is
 * (SVG attributes, not styles: the CSP allows no inline style). */
function histogramSvg(hist, threshold) {
  const width = 640, height = 160, edges = hist.edges || [], counts = hist.counts || [];
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, class: "histogram",
                               role: "img", "aria-label": "background score histogram" });
  if (!counts.length) return svg;
  const lo = Math.min(edges[0], threshold), hi = Math.max(edges[edges.length - 1], threshold);
  const x = (v) => ((v - lo) / ((hi - lo) || 1)) * width;
  const top = Math.max(...counts.map((c) => Math.log1p(c))) || 1;
  counts.forEach((c, i) => {
    const h = (Math.log1p(c) / top) * (height - 10);
    svg.append(svgNode("rect", { x: x(edges[i]), y: height - h, height: h, class: "bar",
                                 width: Math.max(x(edges[i + 1]) - x(edges[i]) - 1, 1) }));
  });
  svg.append(svgNode("line", { x1: x(threshold), x2: x(threshold), y1: 0, y2: height,
                               class: "threshold" }));
  return svg;
}

/** What the query sees: its background histogram and threshold (explain) and what it
 * would have fired on in the retained history (preview). */
async function previewQuery(q) {
  const box = $("#query-preview");
  box.hidden = false;
  $("#preview-title").textContent = `Preview: ${q.name}`;
  const summary = $("#preview-summary");
  summary.textContent = "loading";
  try {
    const id = encodeURIComponent(q.id);
    const [explained, preview] = await Promise.all([
      apiJson(`/queries/${id}/explain?bins=40&k=0`),
      apiJson(`/queries/${id}/preview`, { method: "POST", body: {} }),
    ]);
    const hist = explained.histogram || {};
    $("#preview-histogram").replaceChildren(
      histogramSvg(hist, explained.effective_threshold));
    summary.textContent = `${hist.n || 0} background scores; threshold in force `
      + `${fmtScore(explained.effective_threshold)}; on retained history it would have raised `
      + `${preview.alert_count} alert(s) from ${preview.match_count} matching item(s)`;
    $("#preview-matches").replaceChildren(
      ...(preview.matches || []).slice(0, 12).map((m) => hitCard(q.modality, m)));
  } catch (e) {
    summary.textContent = `preview failed: ${e.message}`;
  }
}

/** What a composite would have fired on over the retained history: per group, the
 * members' hits that completed its rule (`POST /composites/{id}/preview`). */
async function previewComposite(c) {
  const box = $("#query-preview");
  box.hidden = false;
  $("#preview-title").textContent = `Preview: ${c.name} (composite)`;
  $("#preview-histogram").replaceChildren();
  $("#preview-matches").replaceChildren();
  const summary = $("#preview-summary");
  summary.textContent = "loading";
  try {
    const preview = await apiJson(`/composites/${encodeURIComponent(c.id)}/preview`,
                                  { method: "POST", body: {} });
    const hits = Object.entries(preview.hit_counts || {}).map(([id, n]) => `${id} ${n}`);
    summary.textContent = `on retained history it would have raised ${preview.alert_count} `
      + `alert(s); member hits: ${hits.join(", ") || "none"}`
      + (preview.truncated ? " (truncated)" : "");
    $("#preview-matches").replaceChildren(...(preview.would_fire || []).slice(0, 12).map(
      (f) => el("li", "hit firing",
                facts([[c.group_by, f.group], ["time", fmtTime(f.ts)],
                       ["score", fmtScore(f.score)]]),
                el("ol", "members", ...f.members.map((m) => el("li", "member", facts([
                  ["member", m.query_id], ["source", m.source], ["time", fmtTime(m.ts)],
                  ["score", fmtScore(m.score)]])))))));
  } catch (e) {
    summary.textContent = `preview failed: ${e.message}`;
  }
}

/** Delete asks once more in place (no window.confirm, which blocks the page). */
async function confirmDelete(button, path, id) {
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.textContent = "Really delete?";
    return;
  }
  try {
    await apiJson(path, { method: "DELETE" });
    $("#query-result").textContent = `${id} deleted`;
  } catch (e) {
    $("#query-result").textContent = `${id} not deleted: ${e.message}`;
  }
  loadQueries();
}

async function createQuery(event) {
  event.preventDefault();
  const raw = $("#q-threshold").value.trim() || "auto";
  const threshold = raw === "auto" ? "auto" : Number(raw);
  const result = $("#query-result");
  if (threshold !== "auto" && !Number.isFinite(threshold)) {
    result.textContent = "threshold: give auto or a number between -1 and 1";
    return;
  }
  const example = await exampleOf($("#q-example"));
  if (!example && !$("#q-text").value.trim()) {
    result.textContent = "give a text to match or choose an example file";
    return;
  }
  const body = {
    name: $("#q-name").value.trim(), modality: $("#q-modality").value,
    positives: [example || { text: $("#q-text").value }], threshold,
    severity: $("#q-severity").value,
  };
  result.textContent = "registering";
  try {
    const q = await apiJson("/queries", { method: "POST", body });
    result.textContent = `registered ${q.id} (threshold in force ${fmtScore(q.effective_threshold)})`;
    $("#query-form").reset();
  } catch (e) {
    result.textContent = `not registered: ${e.message}`;
  }
  loadQueries();
}

// ---- status ---------------------------------------------------------------------------

/** Samples of the Prometheus text exposition format: [{name, labels, value}]. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const lm of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

function total(samples, name, where = () => true) {
  return samples.filter((s) => s.name === name && where(s.labels))
    .reduce((sum, s) => sum + s.value, 0);
}

/** "decode 2, wire_format 1" (or "0"): dead letters by reason. */
function byReason(counts) {
  const parts = Object.entries(counts || {}).map(([reason, n]) => `${reason} ${n}`);
  return parts.length ? parts.join(", ") : "0";
}

function workerRow(w) {
  const row = el("tr", w.ready ? null : "state-off");
  row.dataset.instance = w.instance;
  const ready = el("td", null, w.ready ? "yes" : "no");
  if (!w.ready) ready.title = (w.missing || []).join("; ");
  row.append(el("td", null, w.instance), el("td", null, w.group),
             el("td", null, Object.entries(w.encoders || {}).map(([m, e]) => `${m}=${e}`).join(", ")),
             el("td", null, fmtTime(w.started_at)), el("td", null, fmtTime(w.last_seen)),
             el("td", null, String(w.assigned_partitions)), ready);
  return row;
}

/** The group from `GET /status` (the workers' heartbeats in Redis), then this worker's own
 * readiness and counters (`/readyz`, `/metrics`). */
async function loadStatus() {
  const group = await apiJson("/status");
  $("#workers-table tbody").replaceChildren(...group.workers.map(workerRow));
  const metricsResp = await api("/metrics");
  const samples = parseMetrics(await metricsResp.text());
  const rows = ["video", "audio", "logs"].map((m) => {
    const s = group.modalities[m] || {};
    const row = el("tr");
    row.dataset.modality = m;
    row.append(el("td", null, m),
               ...[s.rate || 0, s.consumed_last_hour || 0, s.indexed_last_hour || 0,
                   byReason(s.deadletters_last_hour), s.lag || 0,
                   total(samples, "lookout_standing_queries", (l) => l.modality === m)]
                 .map((n) => el("td", null, String(n))));
    return row;
  });
  $("#modality-table tbody").replaceChildren(...rows);
  const ready = await (await api("/readyz")).json();
  $("#readiness").replaceChildren(...facts([
    ["worker", ready.worker_id], ["ready", ready.ready ? "yes" : "no"],
    ["assigned partitions", String(ready.assigned_partitions)],
    ["missing", (ready.missing || []).join("; ")],
  ]).childNodes);
  $("#totals").replaceChildren(...facts([
    ["alerts raised", String(total(samples, "lookout_alerts_total"))],
    ["webhook backlog", String(total(samples, "lookout_webhook_backlog"))],
    ["Redis errors", String(total(samples, "lookout_redis_errors_total"))],
  ]).childNodes);
}

// ---- views and start-up ---------------------------------------------------------------

let statusTimer = null;
let started = false;

function route() {
  const [name, arg] = (location.hash.slice(1) || "live").split("/");
  const view = VIEWS.includes(name) ? name : "live";
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === (view === "alert" ? "live" : view));
  }
  clearInterval(statusTimer);
  showError("");
  const run = {
    live: () => loadQueryNames(),
    alert: () => showAlert(decodeURIComponent(arg || "")),
    search: async () => {},
    queries: () => loadQueries(),
    status: () => {
      statusTimer = setInterval(() => loadStatus().catch(() => {}), 5000);
      return loadStatus();
    },
  }[view];
  run().catch((e) => { if (e.status !== 401) showError(e.message); });
}

function start() {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value);
    $("#token").value = "";
    $("#token-form").hidden = true;
    const waiting = tokenWaiters;
    tokenWaiters = [];
    for (const resolve of waiting) resolve();
    if (started) route();
  });
  // "change" too: a <select> changed by a script or a driver may fire only that one
  for (const kind of ["input", "change"]) $("#live-filters").addEventListener(kind, applyLiveFilter);
  $("#live-filters").addEventListener("submit", (e) => e.preventDefault());
  $("#search-form").addEventListener("submit", runSearch);
  $("#query-form").addEventListener("submit", createQuery);
  for (const button of document.querySelectorAll(".feedback button")) {
    button.addEventListener("click", () => giveFeedback(button.dataset.verdict));
  }
  window.addEventListener("hashchange", route);
  beginOnceAuthorised();
}

/** Links to the Lookout dashboards when the worker knows its Grafana (LOOKOUT_GRAFANA_URL). */
function showGrafanaLinks(base) {
  if (typeof base !== "string" || !/^https?:\/\//.test(base)) return;
  const root = base.replace(/\/+$/, "");
  const link = (uid, label) => {
    const a = el("a", null, label);
    a.href = `${root}/d/${uid}`;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  };
  const box = $("#grafana-links");
  box.replaceChildren("Grafana: ", link("lookout-overview", "Lookout overview"), " · ",
                      link("lookout-queries", "standing queries"));
  box.hidden = false;
}

/** Asks for the token first when the worker needs one (so no first call fails with 401),
 * then shows the view and follows the live stream. */
async function beginOnceAuthorised() {
  const config = await fetch("/console/config.json", { credentials: "omit" })
    .then((r) => r.json()).catch(() => ({ token_required: false }));
  if (config.token_required && !sessionStorage.getItem(TOKEN_KEY)) {
    askToken();
    await tokenGiven();
  }
  showGrafanaLinks(config.grafana_url);
  started = true;
  route();
  new AlertStream(addAlert, loadRecentAlerts).run();
}

start();
