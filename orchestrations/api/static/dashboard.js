"use strict";
// The acrsync dashboard: one view-model request per page refresh (/api/views/..., /api/sites/{site},
// /api/report), revalidated with If-None-Match so an unchanged page costs a 304 and no re-render.
// State is never colour alone: every cell carries a glyph and a text label.
const STATES = {
  VERIFIED: { glyph: "✔", label: "verified" },
  SYNCED: { glyph: "↓", label: "synced" },
  PENDING: { glyph: "…", label: "pending" },
  WAITING_FOR_WINDOW: { glyph: "◷", label: "waiting for window" },
  STALE: { glyph: "!", label: "stale" },
  FAILED: { glyph: "✕", label: "failed" },
  WITHDRAWN: { glyph: "⊘", label: "withdrawn" },
  SKIPPED: { glyph: "–", label: "not in scope" },
};
const REFRESH_MS = 5000;
const EXPAND_ALL_UP_TO = 40; // sites: more than this and rings start collapsed to their roll-up
let timer = null;
let last = { key: null, etag: null, data: null, at: null };
const seenRepositories = new Set();

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// With an API key, open the dashboard as /dashboard?code=<key>: the page sends it as a function key.
const KEY = new URLSearchParams(location.search).get("code");
class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// One GET; 304 answers reuse the last body of the same URL (nothing changed, nothing to render).
async function load(path) {
  const headers = { accept: "application/json" };
  if (KEY) headers["x-functions-key"] = KEY;
  if (last.key === path && last.etag) headers["if-none-match"] = last.etag;
  let response;
  try {
    response = await fetch(path, { headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError("the API cannot be reached", 0);
  }
  if (response.status === 304 && last.key === path) return { data: last.data, changed: false };
  if (!response.ok && response.status !== 202) {
    let detail = `HTTP ${response.status}`;
    try { const problem = await response.json(); detail = problem.detail || problem.title || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(detail, response.status);
  }
  const data = await response.json();
  last = { key: path, etag: response.headers.get("etag"), data, at: new Date() };
  return { data, changed: true };
}

// -- times: relative and absolute, with the zone ------------------------------------------------
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
function absolute(iso) {
  return new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
}
function relative(iso) {
  const seconds = Math.round((new Date(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] = abs < 60 ? [seconds, "second"] : abs < 3600 ? [Math.round(seconds / 60), "minute"]
    : abs < 86400 ? [Math.round(seconds / 3600), "hour"] : [Math.round(seconds / 86400), "day"];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(n, unit);
}
function when(iso) {
  if (!iso) return "—";
  // Two unbreakable halves: a narrow column wraps between them, never inside a date.
  return h("time", { datetime: iso, title: absolute(iso) }, h("span", {}, relative(iso)), " · ", h("span", {}, absolute(iso)));
}
function whenText(iso) { return iso ? `${relative(iso)} (${absolute(iso)})` : "—"; }

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = n, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}`;
}
function stateBadge(state, extra = "") {
  const known = STATES[state] || { glyph: "?", label: String(state).toLowerCase() };
  return h("span", { class: `badge state-${state}` }, h("span", { "aria-hidden": "true" }, known.glyph), ` ${known.label}${extra}`);
}
function legend() {
  return h("ul", { class: "legend", "aria-label": "legend" },
    Object.entries(STATES).map(([state]) => h("li", {}, stateBadge(state))),
    h("li", {}, h("span", { class: "badge running" }, h("span", { "aria-hidden": "true" }, "▶"), " running")));
}
function needs(row) {
  if (row.bytes_needed === null || row.bytes_needed === undefined) return "—";
  const link = row.link ? ` at ${bits(row.link.bits_per_second)} (${row.link.source})` : "";
  return `${bytes(row.bytes_needed)}${link}`;
}
function bits(perSecond) {
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let value = perSecond, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${Number(value.toFixed(1))} ${units[unit]}`;
}
const ON_ITS_WAY = ["PENDING", "WAITING_FOR_WINDOW", "STALE"];
function eta(row) {
  if (!ON_ITS_WAY.includes(row.state)) return "—";
  if (row.offline_since) return `offline since ${whenText(row.offline_since)}, ETA unknown`;
  const late = row.reason === "EXCEEDS_WINDOW" ? ", after the next window: it does not fit" : "";
  if (row.expected_ready_at && row.state !== "STALE") return whenText(row.expected_ready_at) + late;
  if (late) return "ETA unknown: a blob is larger than a whole window";
  return row.state === "STALE" ? "ETA unknown (stale)" : "—";
}

// -- the URL holds the page and its filters: #/?repository=..&ring=..&expand=a,b&page=.. -----------
function route() {
  const [path, query = ""] = (location.hash || "#/").slice(1).split("?");
  const [, page = "", arg = ""] = path.split("/");
  return { page, arg: decodeURIComponent(arg), params: new URLSearchParams(query) };
}
function go(params) {
  const query = new URLSearchParams([...params].filter(([, v]) => v)).toString();
  location.hash = "#/" + (query ? "?" + query : "");
}

// -- the fleet matrix ---------------------------------------------------------------------------
function matrixPath(params) {
  const query = new URLSearchParams();
  for (const key of ["repository", "ring"]) if (params.get(key)) query.set(key, params.get(key));
  if (params.get("page")) query.set("continuation", params.get("page"));
  const text = query.toString();
  return "/api/views/matrix" + (text ? "?" + text : "");
}

function matrixView(view, params) {
  const ringNames = view.rings.map(r => r.name);
  const siteCount = view.rings.reduce((n, r) => n + r.sites.length, 0);
  const expanded = new Set(params.has("expand") ? params.get("expand").split(",").filter(Boolean)
    : siteCount <= EXPAND_ALL_UP_TO || params.get("ring") ? ringNames : []);
  for (const release of view.releases) seenRepositories.add(release.repository);
  if (params.get("repository")) seenRepositories.add(params.get("repository"));

  const toggle = ring => {
    const next = new Set(expanded);
    if (next.has(ring)) next.delete(ring); else next.add(ring);
    params.set("expand", [...next].join(",") || ",");
    go(params);
  };
  let offset = 0;
  const layout = view.rings.map(ring => {
    const entry = { ring, offset, open: expanded.has(ring.name) };
    offset += ring.sites.length;
    return entry;
  });

  const head1 = h("tr", {}, h("th", { scope: "col", rowspan: 2, class: "corner" }, "release"),
    layout.map(({ ring, open }) => h("th", { scope: "colgroup", colspan: open ? ring.sites.length : 1, class: "ring" },
      h("button", { type: "button", class: "ring-toggle", "aria-expanded": String(open), "data-key": `ring-${ring.name}`,
        onclick: () => toggle(ring.name) }, `${open ? "▾" : "▸"} ${ring.name} (${ring.sites.length})`))));
  const head2 = h("tr", {}, layout.map(({ ring, open }) => open
    ? ring.sites.map(site => siteHeader(site))
    : h("th", { scope: "col", class: "rollup-head" }, "ready / sites")));

  const rows = view.releases.map(release => {
    const label = `${release.repository}:${release.tags.join(",") || release.digest.slice(7, 19)}`;
    return h("tr", {}, h("th", { scope: "row", class: "release" },
      h("a", { href: `#/release/${release.id}`, "data-key": `release-${release.id}` }, label),
      h("span", { class: "pushed" }, relative(release.pushed_at))),
      layout.map(({ ring, offset: first, open }, index) => open
        ? ring.sites.map((site, i) => cell(release, site, release.cells[first + i]))
        : rollUpCell(release, release.rings[index])));
  });

  const repoSelect = h("select", { id: "repository-filter", "data-key": "repository-filter",
    onchange: e => { params.set("repository", e.target.value); params.delete("page"); go(params); } },
    h("option", { value: "" }, "all repositories"),
    [...seenRepositories].sort().map(r => h("option", { value: r, selected: r === params.get("repository") }, r)));
  const ringSelect = h("select", { id: "ring-filter", "data-key": "ring-filter",
    onchange: e => { params.set("ring", e.target.value); params.delete("expand"); go(params); } },
    h("option", { value: "" }, "all rings"),
    (params.get("ring") ? [params.get("ring")] : ringNames).map(r => h("option", { value: r, selected: r === params.get("ring") }, r)));
  const paging = h("nav", { class: "paging", "aria-label": "releases pages" },
    h("span", { id: "release-count" }, view.page.shown
      ? `${view.page.shown} release${view.page.shown > 1 ? "s" : ""} shown, newest push first${params.get("page") ? " (an older page)" : ""}${view.page.continuation ? "; older ones on the next page" : ""}`
      : "no releases"),
    params.get("page") ? h("button", { type: "button", "data-key": "newer", onclick: () => history.back() }, "← newer") : null,
    view.page.continuation ? h("button", { type: "button", id: "older", "data-key": "older",
      onclick: () => { params.set("page", view.page.continuation); go(params); } }, "older →") : null);

  return [
    alerts(view.alerts),
    h("div", { class: "filters" },
      h("label", { for: "repository-filter" }, "Repository"), repoSelect,
      h("label", { for: "ring-filter" }, "Ring"), ringSelect, paging),
    view.releases.length
      ? h("div", { class: "matrix-scroll", id: "matrix-scroll", tabindex: "0", "aria-label": "releases by site" },
          h("table", { id: "matrix" }, h("caption", { class: "visually-hidden" }, "State of each release at each site"),
            h("thead", {}, head1, head2), h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No releases yet. Push one: acrsync push inspection/camera:1.5.0"),
    legend(),
  ];
}

function siteHeader(site) {
  const health = site.offline_since ? `offline since ${whenText(site.offline_since)}`
    : site.last_delivery_at ? `last delivery ${whenText(site.last_delivery_at)}` : "no delivery shown";
  return h("th", { scope: "col", class: "site" + (site.critical ? " critical" : "") + (site.offline_since ? " offline" : ""),
    title: `${site.name}${site.critical ? " (critical)" : ""}: ${health}`, "data-site": site.name },
    h("a", { href: `#/site/${site.name}`, "data-key": `site-${site.name}` },
      site.offline_since ? h("span", { class: "offline-mark", "aria-label": "offline" }, "⚠ ") : null, site.name));
}

function cell(release, site, row) {
  if (!row) return h("td", { class: "cell none", "data-site": site.name, title: `${site.name}: no row` }, "");
  const known = STATES[row.state] || { glyph: "?", label: row.state };
  const running = (row.running_pods || 0) > 0;
  const tip = `${site.name}: ${known.label}${row.reason ? " (" + row.reason + ")" : ""}` +
    (row.offline_since ? ` · offline since ${whenText(row.offline_since)}, ETA unknown`
      : row.expected_ready_at ? ` · expected ready ${whenText(row.expected_ready_at)}` : "") +
    (running ? ` · running in ${row.running_pods} pods since ${whenText(row.running_since)}` : "");
  return h("td", { class: `cell state-${row.state}${running ? " running" : ""}`, title: tip, "data-site": site.name,
    "data-state": row.state, "data-running": String(running) },
    h("a", { href: `#/release/${release.id}`, "aria-label": tip, tabindex: "-1" }, running ? "▶" : known.glyph));
}

function rollUpCell(release, roll) {
  const worst = roll.failed ? "FAILED" : roll.stale ? "STALE" : roll.total && roll.ready === roll.total ? "VERIFIED"
    : roll.total ? "PENDING" : "SKIPPED";
  const parts = [`${roll.ready}/${roll.total}`];
  if (roll.stale) parts.push(`${roll.stale} stale`);
  if (roll.failed) parts.push(`${roll.failed} failed`);
  const text = `${roll.ring}: ${parts.join(", ")}${roll.running ? `, running at ${roll.running}` : ""}`;
  return h("td", { class: `rollup state-${worst}`, "data-ring": roll.ring, title: text },
    h("a", { href: `#/release/${release.id}`, "aria-label": `${release.repository} ${text}`, tabindex: "-1" },
      h("span", { "aria-hidden": "true" }, STATES[worst].glyph + " "), parts.join(", ")));
}

function alerts(list) {
  if (!list.length) return h("div", { id: "alerts", class: "alerts empty" });
  const lines = list.map(a => {
    const what = [a.stale ? `${a.stale} release${a.stale > 1 ? "s" : ""} stale` : "", a.failed ? `${a.failed} failed` : ""]
      .filter(Boolean).join(", ");
    const since = a.offline_since ? ` offline since ${whenText(a.offline_since)}` : "";
    return h("li", { class: `alert ${a.failed ? "failed" : "stale"}`, "data-site": a.site },
      h("a", { href: `#/site/${a.site}`, "data-key": `alert-${a.site}` }, a.site), a.critical ? " (critical)" : "",
      `${since}: ${what}${a.reasons.length ? " — " + a.reasons.join(", ") : ""}`);
  });
  return h("section", { id: "alerts", class: "alerts", "aria-label": `${list.length} sites need attention` },
    h("h2", { class: "alerts-title" }, `${list.length} site${list.length > 1 ? "s" : ""} need attention`),
    h("ul", { class: "alert-list", tabindex: "0", "aria-label": "sites with stale or failed releases" }, lines));
}

// -- the release page: the gate's answer first ----------------------------------------------------
function releaseView(page) {
  const { release, gate, evidence } = page;
  const blocked = gate.blocked || [];
  const etaLine = gate.state === "pending"
    ? (gate.expected_ready_at ? `expected ready ${whenText(gate.expected_ready_at)}${gate.expected_ready_reason ? ` (${gate.expected_ready_reason})` : ""}` : `ETA unknown: ${gate.expected_ready_reason || "no estimate"}`)
    : "";
  return [
    h("section", { class: `gate-answer ${gate.state}`, "aria-labelledby": "gate" },
      h("h2", {}, h("span", { class: `gate ${gate.state}`, id: "gate" }, gate.state),
        ` ${gate.ready ?? 0}/${gate.total ?? 0} sites ready (needs ${gate.required ?? 0})`),
      etaLine ? h("p", { id: "gate-eta" }, etaLine) : null,
      (gate.reasons || []).length ? h("ul", { id: "gate-reasons" }, gate.reasons.map(r =>
        h("li", {}, `${r.code}${r.sites.length ? ": " + r.sites.join(", ") : ""}`))) : null,
      blocked.length ? h("p", { id: "gate-blocked" }, "blocked: ", blocked.map((b, i) => [i ? ", " : "",
        h("a", { href: `#/site/${b.site}` }, b.site), ` (${b.state || "no row"}${b.reason ? " " + b.reason : ""})`])) : null),
    h("h2", {}, `${release.repository} `, h("code", {}, release.digest)),
    h("p", {}, `tags ${release.tags.join(", ") || "—"} · pushed `, when(release.pushed_at), " · ", h("code", {}, release.image)),
    h("p", { id: "release-size" }, release.size_bytes !== null
      ? `weighs ${bytes(release.size_bytes)} in ${release.layers} layer${release.layers === 1 ? "" : "s"}${(release.platforms || []).length > 1 ? ` (${release.platforms.join(", ")})` : ""}`
      : `size unknown (${release.size_unknown_reason || "not read yet"})`),
    releaseContext(release),
    h("p", { id: "adoption" }, `held at ${release.adoption.holding} sites · running at ${release.adoption.running}` +
      ` · ever run at ${release.adoption.ran}`),
    h("table", { id: "release-sites" }, h("caption", {}, "Sites"),
      h("thead", {}, h("tr", {}, ["site", "ring", "state", "reason", "expected ready", "needs", "synced", "verified", "evidence", "running"]
        .map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, release.sites.map(row => h("tr", { "data-site": row.site },
        h("th", { scope: "row", class: row.critical ? "critical" : "" }, h("a", { href: `#/site/${row.site}` }, row.site)),
        h("td", {}, row.ring || "—"), h("td", {}, stateBadge(row.state)), h("td", {}, row.reason || ""),
        h("td", { class: "eta" }, eta(row)), h("td", { class: "needs" }, needs(row)), h("td", {}, when(row.synced_at)), h("td", {}, when(row.verified_at)),
        h("td", {}, row.evidence_source || ""),
        h("td", {}, row.running_pods ? [`${row.running_pods} pods since `, when(row.running_since)] : "—"))))),
    h("h3", {}, `Evidence (newest ${evidence.length} of ${page.evidence_total})`),
    h("table", { id: "evidence" }, h("thead", {}, h("tr", {}, ["observed", "site", "source", "change", "summary"]
      .map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, evidence.map(e => h("tr", {}, h("td", {}, when(e.observed_at)), h("td", {}, e.site), h("td", {}, e.source),
        h("td", {}, `${e.state_from || ""} → ${e.state_to || ""}`), h("td", {}, e.summary))))),
  ];
}

// Who shipped it and why (the runbook fields), and what the image says of itself (its OCI annotations).
function releaseContext(release) {
  const notes = release.annotations || {};
  const image = release.image_annotations || {};
  const link = url => /^https?:\/\//.test(url || "") ? h("a", { href: url, rel: "noopener noreferrer" }, url) : url;
  const entries = [
    ["owner", notes.owner], ["approval", link(notes.approval_url)], ["change record", notes.change_record],
    ["rollback when", notes.rollback_condition], ["note", notes.note],
    ["source", link(image.source)], ["revision", image.revision], ["version", image.version], ["built", image.created],
  ].filter(([, value]) => value);
  return h("section", { id: "release-context", "aria-label": "release context" },
    entries.length ? h("dl", {}, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])) : null,
    h("p", {}, notes.set_by ? ["annotated by ", notes.set_by, " ", when(notes.set_at)]
      : "no annotations: acrsync annotate <release> --owner … --approval-url …"));
}

function siteView(site) {
  const repos = site.repositories_state || [];
  const health = site.health || {};
  const extension = health.extension ? `${health.extension.state} ${health.extension.version || ""}`.trim() : "—";
  const table = (id, caption, columns, rows) => h("table", { id }, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map(t => h("th", { scope: "col" }, t)))), h("tbody", {}, rows));
  return [
    h("h2", { class: site.critical ? "critical" : "" }, site.name),
    h("p", {}, `ring ${site.ring} · owner ${site.owner || "—"} · schedule ${site.schedule || "continuous"} · connection ${site.connection_state || "—"}`),
    h("p", {}, "next window ", site.next_window ? [when(site.next_window.opens_at), " – ", when(site.next_window.closes_at)] : "—"),
    h("p", { id: "site-health" }, `cluster ${health.cluster_connectivity || "Unknown"} · registry extension ${extension} · `,
      "TLS until ", when(health.tls_expires_at), ` · disconnected pull ${health.disconnected_pull || "unknown"} · last report `,
      when(health.last_report_at)),
    h("h3", {}, "What runs here"),
    (site.running || []).length
      ? table("site-running", "Running images", ["repository", "tags", "digest", "release", "workloads", "pods", "since", "source"],
          site.running.map(r => h("tr", { "data-digest": r.digest }, h("th", { scope: "row" }, r.repository), h("td", {}, (r.tags || []).join(", ")),
            h("td", {}, h("code", {}, r.digest.slice(0, 19))),
            h("td", {}, r.release_id ? h("a", { href: `#/release/${r.release_id}` }, r.release_id.slice(0, 12)) : h("span", { class: "drift" }, "drift: no release")),
            h("td", {}, r.workloads.map(w => `${w.namespace}/${w.name} (${w.pods})`).join(", ")), h("td", {}, String(r.pods)),
            h("td", {}, when(r.first_seen_at)), h("td", {}, r.source))))
      : h("p", { class: "muted" }, "Nothing seen running yet: no Container Insights, Arc cluster or reporter has said."),
    ...((site.pull_errors || []).length
      ? [h("h3", {}, "Pull errors (24 h)"),
         table("site-pull-errors", "Pull errors", ["image", "reason", "count", "first seen", "last seen", "message"],
           site.pull_errors.map(e => h("tr", {}, h("th", { scope: "row" }, h("code", {}, e.image)), h("td", {}, stateBadge("FAILED", ": " + e.reason)),
             h("td", {}, String(e.count)), h("td", {}, when(e.first_seen_at)), h("td", {}, when(e.last_seen_at)), h("td", {}, e.message))))]
      : []),
    h("h3", {}, "Held by its registry"),
    table("site-repositories", "Latest release per repository", ["repository", "tags", "digest", "state", "reason", "verified"],
      repos.map(r => h("tr", {}, h("th", { scope: "row" }, r.repository), h("td", {}, (r.tags || []).join(", ")),
        h("td", {}, h("code", {}, (r.digest || "").slice(0, 19))), h("td", {}, stateBadge(r.state)), h("td", {}, r.reason || ""),
        h("td", {}, when(r.verified_at))))),
  ];
}

// #/summary[/<period>]: the same table as `acrsync report`.
function summaryView(report, since) {
  const lag = s => s === null || s === undefined ? "—" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s} s`;
  return [
    h("h2", {}, `Summary, last ${since}`),
    h("p", { class: "muted" }, when(report.since), " – ", when(report.until), " · ",
      h("nav", { class: "periods", "aria-label": "period" }, ["7d", "30d", "90d"].map(p => h("a", { href: `#/summary/${p}`, class: "period" }, p)))),
    h("table", { id: "summary" }, h("caption", {}, "Per site"),
      h("thead", {}, h("tr", {}, ["site", "ring", "received", "ready", "lag p50", "lag p95", "windows missed", "stale incidents", "repos approved", "drift"]
        .map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, report.value.map(r => h("tr", { "data-site": r.site },
        h("th", { scope: "row", class: r.critical ? "critical" : "" }, h("a", { href: `#/site/${r.site}` }, r.site)),
        h("td", {}, r.ring), h("td", { "data-col": "received" }, String(r.releases_received)), h("td", { "data-col": "ready" }, String(r.releases_ready)),
        h("td", { "data-col": "lag-p50" }, lag(r.lag_median_seconds)), h("td", { "data-col": "lag-p95" }, lag(r.lag_p95_seconds)),
        h("td", { "data-col": "windows-missed" }, String(r.windows_missed)), h("td", { "data-col": "stale-incidents" }, String(r.stale_incidents)),
        h("td", {}, String(r.exposure.repositories_approved)),
        h("td", { "data-col": "drift" }, r.exposure.drift === null ? "—" : r.exposure.drift ? `${r.exposure.over_exposed} over-exposed, ${r.exposure.missing} missing` : "none"))))),
  ];
}

// -- rendering: keep focus and scroll across refreshes, keep the last data when the API is gone -----
function current() {
  const { page, arg, params } = route();
  if (page === "release") return { path: `/api/views/releases/${encodeURIComponent(arg)}`, render: releaseView };
  if (page === "site") return { path: `/api/sites/${encodeURIComponent(arg)}`, render: siteView };
  if (page === "summary") {
    const since = /^[1-9][0-9]{0,5}[dh]$/.test(arg) ? arg : "30d";
    return { path: `/api/report?since=${since}`, render: data => summaryView(data, since) };
  }
  return { path: matrixPath(params), render: data => matrixView(data, params) };
}

function snapshot() {
  const active = document.activeElement;
  const scroller = document.getElementById("matrix-scroll");
  return { focus: active && active.dataset ? active.dataset.key || active.id : null, x: window.scrollX, y: window.scrollY,
    left: scroller ? scroller.scrollLeft : 0, top: scroller ? scroller.scrollTop : 0 };
}
function restore(saved) {
  const scroller = document.getElementById("matrix-scroll");
  if (scroller) { scroller.scrollLeft = saved.left; scroller.scrollTop = saved.top; }
  window.scrollTo(saved.x, saved.y);
  if (!saved.focus) return;
  const target = document.querySelector(`[data-key="${CSS.escape(saved.focus)}"]`) || document.getElementById(saved.focus);
  if (target) target.focus({ preventScroll: true });
}

function banner(error) {
  const box = document.getElementById("connection");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  const cause = error.status === 0 ? "Connection lost" : `The API is failing (HTTP ${error.status})`;
  box.textContent = `${cause} at ${new Date().toLocaleTimeString()}: showing the data of ` +
    `${last.at ? last.at.toLocaleTimeString() : "—"}; retrying every ${REFRESH_MS / 1000} s.`;
}
// The API is unreachable or failing (not: it refused the request): the last answer stays on screen.
function outage(error) { return error.status === 0 || error.status >= 500; }

let drawn = null; // the page (and its argument) on screen: focus and scroll are kept while it stays
async function render({ force = false } = {}) {
  clearTimeout(timer);
  const view = document.getElementById("view");
  const { path, render: draw } = current();
  const { page, arg } = route();
  try {
    const { data, changed } = await load(path);
    banner(null);
    if (changed || force) {
      const samePage = drawn === `${page}/${arg}`;
      const saved = snapshot();
      view.replaceChildren(...draw(data));
      if (samePage) restore(saved);
      drawn = `${page}/${arg}`;
    }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString(undefined, { timeZoneName: "short" });
    document.body.dataset.ready = "true";
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const keep = outage(error) && last.key === path;
    banner(outage(error) ? error : null);
    if (!keep) {
      view.replaceChildren(h("p", { class: "error" }, error.status === 404 ? "Not found." : error.message));
      drawn = null;
    }
    document.body.dataset.ready = "true";
  } finally {
    timer = setTimeout(render, REFRESH_MS);
  }
}
window.addEventListener("hashchange", () => { document.body.dataset.ready = "false"; render({ force: true }); });
document.getElementById("zone").textContent = `times in ${ZONE}`;
render({ force: true });
