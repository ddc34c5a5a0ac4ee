"use strict";
const STATES = ["VERIFIED","SYNCED","PENDING","WAITING_FOR_WINDOW","STALE","FAILED","WITHDRAWN","SKIPPED"];
const REFRESH_MS = 5000;
const filters = { repository: "", ring: "" };
let timer = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") el.className = v; else if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v);
  }
  for (const child of children.flat()) el.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return el;
}
// With an API key, open the dashboard as /dashboard?code=<key>: the page sends it as a function key.
const KEY = new URLSearchParams(location.search).get("code");
const HEADERS = KEY ? { accept: "application/json", "x-functions-key": KEY } : { accept: "application/json" };
async function api(path) {
  const response = await fetch(path, { headers: HEADERS });
  if (!response.ok && response.status !== 202) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }
function legend() {
  return h("p", { class: "legend" }, STATES.map(s => h("span", { class: `state-${s}` }, s.replaceAll("_", " ").toLowerCase())));
}
function stamp() { document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString(); }

async function matrixView() {
  const [sitesBody, releasesBody] = await Promise.all([api("/api/sites"), api("/api/releases?top=20")]);
  const sites = sitesBody.value.filter(s => !filters.ring || s.ring === filters.ring);
  const rings = [...new Set(sitesBody.value.map(s => s.ring))].sort();
  const repositories = [...new Set(releasesBody.value.map(r => r.repository))].sort();
  const releases = releasesBody.value.filter(r => !filters.repository || r.repository === filters.repository);
  const details = await Promise.all(releases.map(r => api(`/api/releases/${r.id}`)));
  const alerts = [];
  const byRing = rings.filter(r => !filters.ring || r === filters.ring).map(ring => [ring, sites.filter(s => s.ring === ring)]);
  const head1 = h("tr", {}, h("th", { rowspan: 2 }, "release"), byRing.map(([ring, list]) => h("th", { class: "ring", colspan: list.length }, ring)));
  const head2 = h("tr", {}, byRing.flatMap(([, list]) => list.map(s => h("th", { class: "site" + (s.critical ? " critical" : "") },
      h("a", { href: `#/site/${s.name}` }, s.name)))));
  const rows = details.map(release => {
    const bySite = Object.fromEntries(release.sites.map(row => [row.site, row]));
    for (const row of release.sites) {
      if (row.state === "STALE" || row.state === "FAILED") alerts.push({ release, row });
    }
    const label = `${release.repository}:${release.tags.join(",") || release.digest.slice(7, 19)}`;
    return h("tr", {}, h("td", {}, h("a", { href: `#/release/${release.id}` }, label)),
      byRing.flatMap(([, list]) => list.map(site => {
        const row = bySite[site.name];
        if (!row) return h("td", { class: "cell", title: `${site.name}: no row` });
        const running = row.running_pods > 0;
        const tip = `${site.name}: ${row.state}${row.reason ? " (" + row.reason + ")" : ""}` +
          (row.expected_ready_at ? `\nexpected ready ${when(row.expected_ready_at)}` : "") +
          (running ? `\nrunning in ${row.running_pods} pods since ${when(row.running_since)}` : "");
        return h("td", { class: `cell state-${row.state}${running ? " running" : ""}`, title: tip, "data-site": site.name,
          "data-state": row.state, "data-running": String(running) },
          h("a", { href: `#/release/${release.id}`, "aria-label": tip }, running ? "▶" : ""));
      })));
  });
  const ringSelect = h("select", { id: "ring-filter", onchange: e => { filters.ring = e.target.value; render(); } },
    h("option", { value: "" }, "all rings"), rings.map(r => h("option", { value: r, ...(r === filters.ring ? { selected: "" } : {}) }, r)));
  const repoSelect = h("select", { id: "repository-filter", onchange: e => { filters.repository = e.target.value; render(); } },
    h("option", { value: "" }, "all repositories"), repositories.map(r => h("option", { value: r, ...(r === filters.repository ? { selected: "" } : {}) }, r)));
  return [
    h("div", { id: "alerts" }, alerts.map(({ release, row }) => h("div", { class: `alert ${row.state.toLowerCase()}` },
      `${row.state === "STALE" ? "Stale" : "Failed"}: ${row.site} — ${release.repository}:${release.tags.join(",")} (${row.reason || "no reason"})`))),
    h("div", { class: "filters" }, repoSelect, ringSelect),
    releases.length ? h("table", { id: "matrix" }, h("thead", {}, head1, head2), h("tbody", {}, rows))
                    : h("p", { class: "muted" }, "No releases yet. Push one: acrsync push inspection/camera:1.5.0"),
    legend(),
  ];
}

async function releaseView(id) {
  const [release, evidence, gateResponse] = await Promise.all([
    api(`/api/releases/${id}`), api(`/api/releases/${id}/evidence`),
    fetch(`/api/releases/${id}/readiness`, { headers: HEADERS }).then(r => r.json()),
  ]);
  return [
    h("h2", {}, `${release.repository} `, h("code", {}, release.digest)),
    h("p", {}, `tags ${release.tags.join(", ") || "—"} · pushed ${when(release.pushed_at)} · `, h("code", {}, release.image)),
    h("p", {}, "gate: ", h("span", { class: `gate ${gateResponse.state}`, id: "gate" }, gateResponse.state),
      ` ${gateResponse.ready ?? 0}/${gateResponse.total ?? 0} sites ready`),
    h("p", { id: "adoption" }, `held at ${release.adoption.holding} sites · running at ${release.adoption.running}` +
      ` · ever run at ${release.adoption.ran}`),
    h("table", { id: "release-sites" }, h("tr", {}, ["site", "ring", "state", "reason", "expected ready", "synced", "verified", "evidence", "running"].map(t => h("th", {}, t))),
      release.sites.map(row => h("tr", {}, h("td", { class: row.critical ? "critical" : "" }, h("a", { href: `#/site/${row.site}` }, row.site)),
        h("td", {}, row.ring || "—"), h("td", { class: `state-${row.state}` }, row.state), h("td", {}, row.reason || ""),
        h("td", {}, when(row.expected_ready_at)), h("td", {}, when(row.synced_at)), h("td", {}, when(row.verified_at)),
        h("td", {}, row.evidence_source || ""),
        h("td", {}, row.running_pods ? `${row.running_pods} pods since ${when(row.running_since)}` : "—")))),
    h("h3", {}, "Evidence"),
    h("table", { id: "evidence" }, h("tr", {}, ["observed", "site", "source", "change", "summary"].map(t => h("th", {}, t))),
      evidence.value.map(e => h("tr", {}, h("td", {}, when(e.observed_at)), h("td", {}, e.site), h("td", {}, e.source),
        h("td", {}, `${e.state_from || ""} → ${e.state_to || ""}`), h("td", {}, e.summary)))),
  ];
}

async function siteView(name) {
  const site = await api(`/api/sites/${name}`);
  const repos = site.repositories_state || [];
  const health = site.health || {};
  const extension = health.extension ? `${health.extension.state} ${health.extension.version || ""}`.trim() : "—";
  return [
    h("h2", { class: site.critical ? "critical" : "" }, site.name),
    h("p", {}, `ring ${site.ring} · owner ${site.owner || "—"} · schedule ${site.schedule || "continuous"} · connection ${site.connection_state || "—"}`),
    h("p", {}, `next window ${site.next_window ? when(site.next_window.opens_at) + " – " + when(site.next_window.closes_at) : "—"}`),
    h("p", { id: "site-health" }, `cluster ${health.cluster_connectivity || "Unknown"} · registry extension ${extension} · ` +
      `TLS until ${when(health.tls_expires_at)} · disconnected pull ${health.disconnected_pull || "unknown"} · last report ${when(health.last_report_at)}`),
    h("h3", {}, "What runs here"),
    (site.running || []).length
      ? h("table", { id: "site-running" }, h("tr", {}, ["repository", "tags", "digest", "release", "workloads", "pods", "since", "source"].map(t => h("th", {}, t))),
          site.running.map(r => h("tr", { "data-digest": r.digest }, h("td", {}, r.repository), h("td", {}, (r.tags || []).join(", ")),
            h("td", {}, h("code", {}, r.digest.slice(0, 19))),
            h("td", {}, r.release_id ? h("a", { href: `#/release/${r.release_id}` }, r.release_id.slice(0, 12)) : h("span", { class: "drift" }, "drift: no release")),
            h("td", {}, r.workloads.map(w => `${w.namespace}/${w.name} (${w.pods})`).join(", ")), h("td", {}, String(r.pods)),
            h("td", {}, when(r.first_seen_at)), h("td", {}, r.source))))
      : h("p", { class: "muted" }, "Nothing seen running yet: no Container Insights, Arc cluster or reporter has said."),
    ...((site.pull_errors || []).length
      ? [h("h3", {}, "Pull errors (24 h)"),
         h("table", { id: "site-pull-errors" }, h("tr", {}, ["image", "reason", "count", "first seen", "last seen", "message"].map(t => h("th", {}, t))),
           site.pull_errors.map(e => h("tr", {}, h("td", {}, h("code", {}, e.image)), h("td", { class: "state-FAILED" }, e.reason), h("td", {}, String(e.count)),
             h("td", {}, when(e.first_seen_at)), h("td", {}, when(e.last_seen_at)), h("td", {}, e.message))))]
      : []),
    h("h3", {}, "Held by its registry"),
    h("table", { id: "site-repositories" }, h("tr", {}, ["repository", "tags", "digest", "state", "reason", "verified"].map(t => h("th", {}, t))),
      repos.map(r => h("tr", {}, h("td", {}, r.repository), h("td", {}, (r.tags || []).join(", ")), h("td", {}, h("code", {}, (r.digest || "").slice(0, 19))),
        h("td", { class: `state-${r.state}` }, r.state), h("td", {}, r.reason || ""), h("td", {}, when(r.verified_at))))),
  ];
}

// #/summary[/<period>]: GET /api/report per site (the same table as `acrsync report`).
async function summaryView(period) {
  const since = /^[1-9][0-9]{0,5}[dh]$/.test(period || "") ? period : "30d";
  const report = await api(`/api/report?since=${since}`);
  const lag = s => s === null || s === undefined ? "—" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s} s`;
  return [
    h("h2", {}, `Summary, last ${since}`),
    h("p", { class: "muted" }, `${when(report.since)} – ${when(report.until)} · `,
      ["7d", "30d", "90d"].map(p => h("a", { href: `#/summary/${p}`, class: "period" }, p))),
    h("table", { id: "summary" }, h("tr", {}, ["site", "ring", "received", "ready", "lag p50", "lag p95", "windows missed", "stale incidents", "repos approved", "drift"].map(t => h("th", {}, t))),
      report.value.map(r => h("tr", { "data-site": r.site }, h("td", { class: r.critical ? "critical" : "" }, h("a", { href: `#/site/${r.site}` }, r.site)),
        h("td", {}, r.ring), h("td", { "data-col": "received" }, String(r.releases_received)), h("td", { "data-col": "ready" }, String(r.releases_ready)),
        h("td", { "data-col": "lag-p50" }, lag(r.lag_median_seconds)), h("td", { "data-col": "lag-p95" }, lag(r.lag_p95_seconds)),
        h("td", { "data-col": "windows-missed" }, String(r.windows_missed)), h("td", { "data-col": "stale-incidents" }, String(r.stale_incidents)),
        h("td", {}, String(r.exposure.repositories_approved)),
        h("td", { "data-col": "drift" }, r.exposure.drift === null ? "—" : r.exposure.drift ? `${r.exposure.over_exposed} over-exposed, ${r.exposure.missing} missing` : "none")))),
  ];
}

async function render() {
  clearTimeout(timer);
  document.body.dataset.ready = "false";
  const view = document.getElementById("view");
  const [, page, arg] = (location.hash || "#/").split("/");
  try {
    const content = page === "release" ? await releaseView(arg) : page === "site" ? await siteView(arg)
      : page === "summary" ? await summaryView(arg) : await matrixView();
    view.replaceChildren(...content);
    document.body.dataset.ready = "true";
    stamp();
  } catch (error) {
    view.replaceChildren(h("p", { class: "error" }, String(error)));
  }
  timer = setTimeout(render, REFRESH_MS);
}
window.addEventListener("hashchange", render);
render();
