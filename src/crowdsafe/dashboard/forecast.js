// Forecast panel: people per zone 15/30/60 min ahead with the 80 % interval, stewards for the next
// slot, time to clear through the exits, and the staffing plan as CSV. Polls once a minute (the
// forecast refreshes with each new minute of readings); asks /status first so a model still being
// fitted shows "fitting" instead of failed requests.
"use strict";
(function () {
  const TOKEN_KEY = "crowdsafe.token";
  const POLL_MS = 60000;
  const RETRY_MS = 5000;
  const TOKEN_POLL_MS = 1000;
  const SHOW_H = [15, 30, 60];
  const $ = (id) => document.getElementById(id);
  const F = { timer: null, plan: null, site: null };

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  const round = (v) => (v === null || v === undefined ? "–" : String(Math.round(v)));
  const hhmm = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hourCycle: "h23", hour: "2-digit", minute: "2-digit" });
  const fmtClear = (s, count) => (window.CS && CS.fmtClear ? CS.fmtClear(s, count)
    : s === null || s === undefined ? "no exits" : `${Math.round(s)} s`);

  async function get(path) {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    const resp = await fetch(path, { cache: "no-store", headers: { Authorization: "Bearer " + token } });
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp;
  }

  function note(text) {
    $("forecast-note").textContent = text;
  }

  function cell(fc, h) {
    const k = fc.horizons_min.indexOf(h);
    const td = el("td", null, h === 30 ? "" : "opt");
    if (k < 0) { td.textContent = "–"; return td; }
    const interval = el("small", ` ${round(fc.lo80[k])}–${round(fc.hi80[k])}`, "interval");
    interval.style.color = "var(--muted)";  // style.css belongs to the main dashboard
    td.append(el("span", round(fc.mean[k])), interval);
    td.dataset.h = String(h);
    td.title = `95 %: ${round(fc.lo95[k])}–${round(fc.hi95[k])}`;
    if (fc.capacity && fc.hi80[k] >= fc.capacity) td.classList.add("over");
    return td;
  }

  function render(site, zones, forecast, plan) {
    const body = $("forecast-table").tBodies[0];
    body.replaceChildren();
    const byZone = Object.fromEntries(forecast.zones.map((f) => [f.zone_id, f]));
    const readings = Object.fromEntries(zones.map((z) => [z.id, z]));
    const firstSlot = {};
    if (plan) for (const s of plan.zones) if (s.slot_start_ts === plan.issued_ts) firstSlot[s.zone_id] = s;
    for (const zone of site.zones) {
      const fc = byZone[zone.id];
      const r = readings[zone.id] && readings[zone.id].reading;
      const tr = el("tr");
      tr.dataset.zone = zone.id;
      const now = el("td", r ? round(r.count) : "–");
      now.dataset.now = zone.id;  // kept live by app.js: one "now" on the whole page
      tr.append(el("td", zone.name), now);
      if (fc) {
        fc.capacity = zone.capacity;
        for (const h of SHOW_H) tr.appendChild(cell(fc, h));
      } else {
        const td = el("td", "no recent readings", "empty");
        td.colSpan = SHOW_H.length;
        tr.appendChild(td);
      }
      const slot = firstSlot[zone.id];
      tr.appendChild(el("td", slot ? String(slot.stewards) : "–"));
      const clear = el("td", r ? fmtClear(r.clearance_s, r.count) : "–");
      clear.dataset.clearance = zone.id;
      if (r && r.clearance_s !== null && r.clearance_s >= 480) clear.className = "over";
      tr.appendChild(clear);
      body.appendChild(tr);
    }
    if (plan && plan.site.length) {
      const s = plan.site[0];
      const tr = el("tr", null, "site-row");
      const td = el("td", `site, ${hhmm(s.slot_start_ts)}–${hhmm(s.slot_end_ts)}: ${s.stewards} stewards, ` +
        `${s.medics} medics (planned from ${plan.bound})`);
      td.colSpan = 3 + SHOW_H.length + 1;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    $("forecast-csv").hidden = !plan;
  }

  // While the model fits, one row per zone holds the panel's place (and the live count), so the
  // page does not jump when the forecast arrives.
  async function renderPending() {
    if (!F.site) F.site = await (await get("/api/site")).json();
    const body = $("forecast-table").tBodies[0];
    if (body.rows.length) return;
    for (const zone of F.site.zones) {
      const tr = el("tr");
      tr.dataset.zone = zone.id;
      const now = el("td", "–");
      now.dataset.now = zone.id;
      const wait = el("td", "forecast after the model is fitted", "empty");
      wait.colSpan = SHOW_H.length;
      wait.style.whiteSpace = "normal";  // a phone must not scroll for a placeholder
      const clear = el("td", "–");
      clear.dataset.clearance = zone.id;
      tr.append(el("td", zone.name), now, wait, el("td", "–"), clear);
      body.appendChild(tr);
    }
  }

  // Which events the forecasts include and where each one's expected crowd comes from.
  function eventsNote(zones) {
    const seen = new Map();
    for (const z of zones) for (const e of (z.events || [])) seen.set(`${e.event}@${e.start_ts}`, e);
    if (!seen.size) return "";
    const FROM = {
      history: (e) => `learned from ${e.occurrences} earlier ${e.series}`,
      attendance: (e) => `arrival curve for ${Math.round(e.attendance)} people` +
        (e.attendance_given ? "" : " (site default)"),
      none: () => "not in this method",
    };
    const parts = [...seen.values()].map((e) => `${e.event}: ${(FROM[e.source] || (() => e.source))(e)}`);
    return `includes ${parts.join("; ")}; `;
  }

  async function refresh() {
    clearTimeout(F.timer);
    let next = POLL_MS;
    try {
      const statusResp = await get("/api/forecast/status");
      if (!statusResp) { note("token needed"); next = TOKEN_POLL_MS; return; }  // no request until one is saved
      const status = await statusResp.json();
      if (status.error) { note(`unavailable: ${status.error}`); return; }
      if (!status.ready) {
        note(`fitting the ${status.method} model…`);
        next = RETRY_MS;
        await renderPending();
        return;
      }
      const [site, zones, forecast] = await Promise.all(
        ["/api/site", "/api/zones", "/api/forecast"].map(async (p) => (await get(p)).json()));
      F.plan = status.staffing_policy ? await (await get("/api/forecast/staffing")).json() : null;
      render(site, zones, forecast, F.plan);
      const LEARNED = {
        simulated: "trained on simulated days only",
        none: "nothing fitted: the last reading and its recent changes",
        schedule: "the schedule's arrival curve",
        history: `trained on ${status.history_days || "the"} stored days of this site`,
      };
      const learned = LEARNED[status.trained_on] ||
        (status.trained_on ? `trained on ${status.trained_on}` : "");
      const mins = (forecast.zones || []).map((z) => z.history_min).filter((m) => m != null);
      const hist = mins.length ? `, ${Math.min(...mins)} min of readings` : "";
      note(`${forecast.method} (${learned}${hist}), ` +
        `${status.schedule_aware ? "schedule-aware" : "no schedule in the site file"}; ` +
        `${eventsNote(forecast.zones || [])}` +
        `updated ${hhmm(forecast.now)}${F.plan ? "" : "; no staffing policy in the site file"}`);
    } catch (err) {
      note("forecast not available now");
      console.warn(err);
    } finally {
      F.timer = setTimeout(refresh, next);
    }
  }

  async function downloadCsv() {
    const resp = await get("/api/forecast/staffing.csv");
    if (!resp) return;
    const url = URL.createObjectURL(await resp.blob());
    const a = el("a");
    a.href = url;
    a.download = "staffing.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!$("forecast-panel")) return;
    $("forecast-csv").addEventListener("click", () => downloadCsv().catch(console.warn));
    // A token saved in the dialog starts the panel too (app.js stores it, then closes the dialog).
    $("token-dialog").addEventListener("close", () => refresh());
    refresh();
  });
})();
