// vx's search page. Plain JS, no build step: vxd embeds and serves it.
// Text from the index is only ever put in the page with textContent.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

// 75.4 -> "1:15", 3725 -> "1:02:05".
function clock(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
}

function duration(s) {
  if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  if (s >= 60) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.round(s) + " s";
}

function date(t) {
  return new Date(t * 1000).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

// ---- search --------------------------------------------------------------

const form = $("#search-form");
let asked = 0;
let timer = null;

// The form as the query string of /api/search (and of the page's address).
function formQuery() {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) {
    if (k === "label") {
      v.split(",").map((l) => l.trim()).filter(Boolean).forEach((l) => p.append("label", l));
    } else if (String(v).trim() !== "") {
      p.append(k, String(v).trim());
    }
  }
  return p;
}

// The address's query back into the form, so a bookmark repeats a search.
function fillForm(p) {
  for (const field of form.elements) {
    if (!field.name) continue;
    if (field.type === "checkbox") field.checked = p.getAll(field.name).includes(field.value);
    else if (field.name === "label") field.value = p.getAll("label").join(", ");
    else field.value = p.get(field.name) || "";
  }
}

function scheduleSearch() {
  clearTimeout(timer);
  timer = setTimeout(search, 250);
}

async function search() {
  const p = formQuery();
  const query = p.toString();
  history.replaceState(null, "", query ? "/?" + query : "/");
  const mine = ++asked;
  const note = $("#search-note");
  if (!query) {
    note.textContent = "Type what you are looking for: an object, words on screen, something said.";
    $("#results").replaceChildren();
    return;
  }
  note.textContent = "Searching…";
  let reply;
  try {
    const r = await fetch("/api/search?" + query, { credentials: "same-origin" });
    reply = await r.json();
  } catch (e) {
    reply = { error: "vxd did not answer: " + e.message };
  }
  if (mine !== asked) return; // a newer search is under way
  if (reply.error) {
    note.textContent = reply.error;
    note.classList.add("error");
    return;
  }
  note.classList.remove("error");
  const n = reply.files.length;
  const words = [n === 0 ? "Nothing found." : n + (n === 1 ? " file" : " files")];
  if (reply.warnings.length) words.push(reply.warnings.join(" "));
  note.textContent = words.join(" · ");
  $("#results").replaceChildren(...reply.files.map(fileCard));
}

// A file: what it is on the left, its moments beside it.
function fileCard(f) {
  const card = el("article", "file kind-" + f.kind);
  const info = el("div", "info");
  const head = el("div", "file-head");
  head.append(el("span", "kind", f.kind), el("h3", "name", f.name));
  const about = [date(f.time)];
  if (f.duration_s) about.push(duration(f.duration_s));
  info.append(head, el("div", "about", about.join(" · ")), el("div", "path", f.path));
  if (f.unplayable) {
    info.append(el("p", "unplayable", "Not playable here: " + f.unplayable + "."), el("code", "cmd", f.play));
  }
  const moments = el("div", f.kind === "image" ? "moments photo" : "moments");
  f.moments.forEach((m) => moments.append(momentTile(f, m)));
  card.append(info, moments);
  return card;
}

function momentTile(f, m) {
  const tile = el("button", "moment");
  tile.type = "button";
  const pic = el("div", "thumb");
  if (m.thumb) {
    const img = el("img");
    img.src = m.thumb;
    img.alt = f.kind === "image" ? f.name : "at " + clock(m.start_s || 0);
    img.loading = "lazy";
    pic.append(img);
  } else {
    pic.append(el("span", "no-thumb", f.kind === "audio" ? "♪" : "no picture"));
  }
  if (m.start_s !== null) {
    pic.append(el("span", "chip", clock(m.start_s) + (m.end_s > m.start_s + 1 ? "–" + clock(m.end_s) : "")));
  }
  tile.append(pic);
  const snip = el("p", "snippet");
  m.snippet.forEach((part, i) => snip.append(i % 2 ? el("mark", null, part) : document.createTextNode(part)));
  tile.append(snip);
  const said = m.snippet.join("");
  const tags = m.labels.filter((l) => !said.includes(l)).slice(0, 4);
  if (m.speaker) tags.unshift(m.speaker);
  if (tags.length) tile.append(el("p", "labels", tags.join(" · ")));
  tile.addEventListener("click", () => openPlayer(f, m));
  return tile;
}

// ---- player ----------------------------------------------------------------

const dialog = $("#player");
const video = $("#video");
const photo = $("#photo");

function openPlayer(f, m) {
  const start = m.start_s || 0;
  $("#player-title").textContent = f.name + (m.start_s !== null ? " at " + clock(start) : "");
  video.hidden = photo.hidden = $("#player-note").hidden = true;
  video.pause();
  if (f.unplayable) {
    $("#player-why").textContent = "This browser cannot open it: " + f.unplayable + ".";
    $("#player-cmd").textContent = m.play;
    $("#player-note").hidden = false;
  } else if (f.kind === "image") {
    photo.src = f.media;
    photo.alt = f.name;
    photo.hidden = false;
  } else {
    video.hidden = false;
    video.dataset.start = start;
    video.src = f.media + "#t=" + start;
    video.play().catch(() => {}); // without autoplay rights it waits for a click
  }
  if (!dialog.open) dialog.showModal();
}

// Some files ignore the #t= fragment; seek once their length is known.
video.addEventListener("loadedmetadata", () => {
  const start = Number(video.dataset.start || 0);
  if (Math.abs(video.currentTime - start) > 0.5) video.currentTime = start;
});

function closePlayer() {
  video.pause();
  video.removeAttribute("src");
  video.load();
  dialog.close();
}

$("#player-close").addEventListener("click", closePlayer);
dialog.addEventListener("cancel", (e) => { e.preventDefault(); closePlayer(); });
dialog.addEventListener("click", (e) => { if (e.target === dialog) closePlayer(); });

// ---- status ----------------------------------------------------------------

function row(cells) {
  const tr = el("tr");
  cells.forEach(([text, cls]) => tr.append(el("td", cls, text)));
  return tr;
}

/** MiB as vxctl shows them: decimal GB. */
function gb(mib) {
  return ((mib * 1048576) / 1e9).toFixed(1) + " GB";
}

function renderStatus(s) {
  const f = s.files;
  const done = Math.min(f.done, f.seen);
  $("#bar-fill").style.width = (f.seen ? (100 * done) / f.seen : 100) + "%";
  let line = done + " of " + f.seen + " files done";
  if (s.paused) line += " · paused";
  else if (s.stalled) line += " · " + s.stalled;
  else if (s.idle) line += " · idle";
  $("#progress-line").textContent = line;
  const detail = [f.indexed + " indexed", f.failed + " failed", f.queued + " queued", f.in_progress + " in progress"];
  if (s.files_per_min) detail.push(s.files_per_min.toFixed(1) + " files/min");
  if (s.eta_s && !s.idle) detail.push("about " + duration(s.eta_s) + " left");
  if (s.embed_backlog) detail.push(s.embed_backlog + " moments wait for their meaning vector");
  $("#progress-detail").textContent = detail.join(" · ");
  const b = s.budget;
  $("#budget").textContent = "Budget: " + b.cores + " cores · hosts and decoders " +
    gb(b.planned_mb) + " of " + gb(b.memory_mb) + " at peak · hosts: " +
    b.hosts.map(([p, n]) => p + " " + n).join(", ") +
    (b.index_hours ? " · indexes " + b.index_hours : "");
  $("#current").replaceChildren(...s.current.map((c) =>
    el("li", null, (c.plugin ? c.plugin + ": " : "decoding: ") + c.path)));
  $("#warnings").replaceChildren(...s.warnings.map((w) => el("li", null, w)));
  $("#plugins tbody").replaceChildren(...s.plugins.map((p) => row([
    [p.name + (p.worker ? " #" + p.worker : "")],
    [p.state, "state state-" + p.state],
    [p.pid === null ? "–" : String(p.pid), "num"],
    [String(p.restarts), "num"],
    [String(p.crashes), "num"],
    [p.last_error || "", "reason"],
  ])));
  $("#failed tbody").replaceChildren(...s.failed_files.map((x) => row([
    [x.path, "file-path"], [x.plugin], [x.reason, "reason"],
  ])));
  $("#failed-none").hidden = s.failed_files.length > 0;
  $("#failed-count").textContent = f.failed ? "(" + f.failed + ")" : "";
  const badge = $("#nav-badge");
  badge.hidden = !f.failed;
  badge.textContent = f.failed + " failed";
}

async function pollStatus() {
  try {
    const r = await fetch("/api/status", { credentials: "same-origin" });
    if (r.ok) renderStatus(await r.json());
    else $("#progress-line").textContent = "vxd refused: " + (await r.text());
  } catch (e) {
    $("#progress-line").textContent = "vxd does not answer: " + e.message;
  }
  setTimeout(pollStatus, 1000);
}

// ---- start -----------------------------------------------------------------

const onStatus = location.pathname === "/status";
$(onStatus ? "#status-view" : "#search-view").hidden = false;
$(onStatus ? "#nav-status" : "#nav-search").classList.add("here");
if (onStatus) {
  pollStatus();
} else {
  const asked = new URLSearchParams(location.search);
  fillForm(asked);
  // Filters stay folded away unless the address sets one.
  $("#filters").open = [...asked.keys()].some((k) => k !== "q");
  form.addEventListener("input", scheduleSearch);
  form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); search(); });
  search();
}
