/* Supervision dashboard: plain JS, no external assets. Every value from the API
   is put on the page as text (textContent / createTextNode), never as HTML.
   Simplified Chinese first, English on a switch; live updates over SSE. */
"use strict";

const T = {
  zh: {
    brand: "农资实名购买监管", overview: "总览", queue: "违规与案件", fleet: "终端", upstream: "上报",
    login: "登录", name: "用户名", password: "密码", logout: "退出", loginFailed: "用户名或密码错误",
    today: "今日", yesterday: "昨日", sales: "销售", refusals: "拒售", voids: "作废", openCases: "未结案件", online: "在线终端",
    byArea: "按辖区", town: "镇街", village: "村社", shop: "门店", subject: "主体", terminal: "终端",
    state: "状态", code: "违规类型", level: "处理层级", assignee: "负责人", opened: "立案时间", deadline: "期限",
    all: "全部", active: "未结", open: "待指派", assigned: "已指派", inspected: "已核查", closed: "已结案",
    filter: "筛选", cases: "案件", violations: "违规记录", caseNo: "案件", timeline: "处理记录",
    assign: "指派", inspect: "记录现场核查", result: "核查结果", notes: "说明", save: "保存",
    photo: "现场照片", upload: "上传", close: "结案", outcome: "结论",
    violation_found: "发现违规", no_violation_found: "未发现违规", rectified_on_site: "现场整改",
    confirmed: "确认违规", dismissed: "撤销", penalised: "已处罚",
    village_l: "村社", town_l: "镇街", district_l: "区",
    grade: "信用等级", allowance: "定额", used: "已用", remaining: "剩余", category: "类别", period: "期间",
    purchases: "购买记录", time: "时间", items: "商品", identity: "身份核验", mode: "方式",
    ledger: "台账", terminals: "终端状态", lastSeen: "最近消息", backlog: "待上传", versions: "版本", skew: "时钟偏差",
    designated: "定点经营", hours: "营业时间", yes: "是", no: "否", registry: "登记信息", idNumber: "证件号", revealId: "显示完整证件号（留痕）",
    perDay: "近30天购买量（农药 g/mL，肥料 kg）", pesticide: "农药", fertilizer: "肥料",
    quotaByTown: "各镇街定额使用（用量最高的 12 项）", usedPct: "已用定额 %", pending: "待上报", sent: "已上报", lastSuccess: "最近成功", lastError: "最近错误",
    failures: "连续失败", nextAttempt: "下次重试", none: "暂无", record: "记录", detail: "详情",
    opened_a: "立案", assigned_a: "指派", joined_a: "并案", inspected_a: "现场核查", photo_a: "照片", closed_a: "结案", escalated_a: "升级",
    close_proposed_a: "提请结案", close_rejected_a: "驳回结案", pendingClose: "待确认结案", proposedBy: "提请人",
    confirmClose: "确认结案", rejectClose: "驳回", withdrawClose: "撤回", needsSecond: "以下结论须由另一名{role}级或以上人员确认：",
    severity: "严重程度", sev1: "严重", sev2: "较重", sev3: "一般", sev4: "关注", inspectQueue: "检查队列",
    watchList: "关注清单", watchHint: "用量排名和终端运行情况：供办公室关注，不派现场检查。", times: "次数与时间",
    pages: "分页", prev: "上一页", next: "下一页", pageOf: "第 {n} / {m} 页",
    reg_id: "编号", reg_name: "姓名/名称", reg_kind: "主体类型", reg_status: "状态", reg_town: "镇街", reg_village: "村社",
    reg_group: "户/合作社", reg_phone: "电话", reg_mobile: "手机", reg_address: "地址",
    kind_farmer: "农户", kind_family_farm: "家庭农场", kind_cooperative: "合作社", kind_company: "企业",
    status_active: "正常", status_suspended: "暂停", status_revoked: "注销",
    id_card: "刷卡", id_face: "刷脸", "id_card+face": "刷卡并刷脸", id_override: "店员代为确认", mode_online: "联网", mode_offline: "离线",
    system: "系统", overdue: "已超期", offline: "离线", minutes: "分钟", seconds: "秒", hours: "小时", days: "天", loading: "加载中…", back: "返回",
    search: "搜索", searchHint: "农户姓名、卡号、证件号、门店或农药名称/登记证号", searchResults: "搜索结果", farmers: "农户/主体", shops: "门店", products: "产品",
    by_name: "按姓名", by_card: "按卡号", by_id_number: "按证件号（已留痕）", product: "产品", reg: "登记证号", status: "状态", kind: "类别", holder: "持有人",
    from: "起始日期", to: "截止日期", clear: "清除", exportCsv: "导出 CSV", exportXlsx: "导出 Excel", printSheet: "打印现场检查记录表（PDF）",
    map: "地图", trends: "趋势", mapHint: "按网格自身坐标绘制，无需在线地图；圆点大小为未结案件数，红色为有严重违规。", noCoords: "无坐标的门店",
    perWeek: "每周销售、拒售与违规（次）", weekOf: "周", byGroup: "分组", pesticideG: "农药（固体，g）", pesticideMl: "农药（液体，mL）", fertilizerKg: "肥料（kg）",
    perDayG: "近30天农药（固体）购买量 g", perDayMl: "近30天农药（液体）购买量 mL", perDayKg: "近30天肥料购买量 kg", weekly: "各周",
    prod_banned: "禁止销售", prod_restricted: "限制使用", prod_normal: "正常",
  },
  en: {
    brand: "Agri-input supervision", overview: "Overview", queue: "Violations & cases", fleet: "Terminals", upstream: "Upstream",
    login: "Log in", name: "User name", password: "Password", logout: "Log out", loginFailed: "Wrong name or password",
    today: "Today", yesterday: "Yesterday", sales: "Sales", refusals: "Refusals", voids: "Voids", openCases: "Open cases", online: "Terminals online",
    byArea: "By area", town: "Town", village: "Village", shop: "Shop", subject: "Subject", terminal: "Terminal",
    state: "State", code: "Violation", level: "Level", assignee: "Assignee", opened: "Opened", deadline: "Deadline",
    all: "All", active: "Active", open: "Open", assigned: "Assigned", inspected: "Inspected", closed: "Closed",
    filter: "Filter", cases: "Cases", violations: "Violations", caseNo: "Case", timeline: "Timeline",
    assign: "Assign", inspect: "Record inspection", result: "Result", notes: "Notes", save: "Save",
    photo: "Photos", upload: "Upload", close: "Close case", outcome: "Outcome",
    violation_found: "Violation found", no_violation_found: "No violation found", rectified_on_site: "Rectified on site",
    confirmed: "Confirmed", dismissed: "Dismissed", penalised: "Penalised",
    village_l: "village", town_l: "town", district_l: "district",
    grade: "Credit grade", allowance: "Allowance", used: "Used", remaining: "Remaining", category: "Category", period: "Period",
    purchases: "Purchases", time: "Time", items: "Items", identity: "Identity", mode: "Mode",
    ledger: "Ledger", terminals: "Terminals", lastSeen: "Last seen", backlog: "Backlog", versions: "Versions", skew: "Clock skew",
    designated: "Designated", hours: "Opening hours", yes: "yes", no: "no", registry: "Registry", idNumber: "ID number", revealId: "Show full ID number (audited)",
    perDay: "Purchases, last 30 days (pesticide g/mL, fertilizer kg)", pesticide: "Pesticide", fertilizer: "Fertilizer",
    quotaByTown: "Quota use by town (the 12 highest)", usedPct: "Allowance used %", pending: "Pending", sent: "Sent", lastSuccess: "Last success", lastError: "Last error",
    failures: "Failures in a row", nextAttempt: "Next attempt", none: "None", record: "Record", detail: "Detail",
    opened_a: "opened", assigned_a: "assigned", joined_a: "joined", inspected_a: "inspected", photo_a: "photo", closed_a: "closed", escalated_a: "escalated",
    close_proposed_a: "close proposed", close_rejected_a: "close rejected", pendingClose: "Close awaiting confirmation", proposedBy: "Proposed by",
    confirmClose: "Confirm close", rejectClose: "Reject", withdrawClose: "Withdraw", needsSecond: "These outcomes need a second person, {role} level or above: ",
    severity: "Severity", sev1: "critical", sev2: "serious", sev3: "moderate", sev4: "watch", inspectQueue: "Inspection queue",
    watchList: "Watch list", watchHint: "Top-buyer rankings and terminal health: for the office to follow, not for a site visit.", times: "Count and time",
    pages: "Pages", prev: "Previous", next: "Next", pageOf: "Page {n} of {m}",
    reg_id: "Id", reg_name: "Name", reg_kind: "Kind", reg_status: "Status", reg_town: "Town", reg_village: "Village",
    reg_group: "Household/cooperative", reg_phone: "Phone", reg_mobile: "Mobile", reg_address: "Address",
    kind_farmer: "farmer", kind_family_farm: "family farm", kind_cooperative: "cooperative", kind_company: "company",
    status_active: "active", status_suspended: "suspended", status_revoked: "revoked",
    id_card: "card", id_face: "face", "id_card+face": "card and face", id_override: "clerk override", mode_online: "online", mode_offline: "offline",
    system: "system", overdue: "overdue", offline: "offline", minutes: "min", seconds: "s", hours: "h", days: "days", loading: "Loading…", back: "Back",
    search: "Search", searchHint: "Farmer name, card or ID number, shop, or product name / registration number", searchResults: "Search results", farmers: "Farmers / subjects", shops: "Shops", products: "Products",
    by_name: "by name", by_card: "by card", by_id_number: "by ID number (audited)", product: "Product", reg: "Registration no.", status: "Status", kind: "Kind", holder: "Holder",
    from: "From", to: "To", clear: "Clear", exportCsv: "Export CSV", exportXlsx: "Export Excel", printSheet: "Print inspection sheet (PDF)",
    map: "Map", trends: "Trends", mapHint: "Drawn from the grid's own coordinates, no online map; dot size is open cases, red means a critical finding.", noCoords: "Shops without coordinates",
    perWeek: "Sales, refusals and violations per week", weekOf: "Week", byGroup: "Group by", pesticideG: "Pesticide (solid, g)", pesticideMl: "Pesticide (liquid, mL)", fertilizerKg: "Fertilizer (kg)",
    perDayG: "Pesticide (solid) bought, last 30 days, g", perDayMl: "Pesticide (liquid) bought, last 30 days, mL", perDayKg: "Fertilizer bought, last 30 days, kg", weekly: "Weeks",
    prod_banned: "banned", prod_restricted: "restricted use", prod_normal: "normal",
  },
};

let lang = localStorage.getItem("lang") || "zh";
let token = sessionStorage.getItem("token");
let me = null;
let codes = {};
let source = null;
const main = document.getElementById("main");

function t(key) { return (T[lang] && T[lang][key]) || key; }
function codeText(c) { return (codes[c] && codes[c][lang]) || c; }

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "bg") el.style.background = v;  /* CSSOM: allowed by the CSP, a style attribute is not */
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
  }
  return el;
}

/* the district's local time (Asia/Shanghai, from /api/me), whatever zone the browser is set to */
function fmtTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms + ((me && me.tz_minutes !== undefined) ? me.tz_minutes : 480) * 60000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}
function words(x) { return x ? (x[lang] || x.zh) : ""; }
function person(login, names) { return login ? ((names && names[login]) || login) : "—"; }
function identityText(v) { return v ? t("id_" + v) : "—"; }
function modeText(v) { return v ? t("mode_" + v) : "—"; }
/* a product by its name; the registration number on hover */
function items(list) {
  return h("span", {}, list.flatMap((i, k) => [k ? "、" : null,
    h("span", { class: "product", title: i.product, "data-reg": i.product, text: `${i.name || i.product}×${i.packs}` })]));
}
/* how long ago, by the server's clock (`now` from the API): a browser's clock may be off, or the
   district's calendar virtual; seconds, then minutes, hours and days */
function ago(ms, now) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s} ${t("seconds")}`;
  if (s < 120 * 60) return `${Math.round(s / 60)} ${t("minutes")}`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} ${t("hours")}`;
  return `${Math.round(s / 86400)} ${t("days")}`;
}
function pageParam() { return String(Math.max(1, parseInt(params().get("page") || "1", 10) || 1)); }
function badge(state) { return h("span", { class: "badge b-" + state, "data-state": state, text: t(state) }); }

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (token) o.headers["Authorization"] = "Bearer " + token;
  if (o.json !== undefined) { o.body = JSON.stringify(o.json); o.headers["Content-Type"] = "application/json"; delete o.json; }
  const r = await fetch(path, o);
  if (r.status === 401) { logout(false); throw new Error("unauthenticated"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { const e = new Error(body[lang === "en" ? "message_en" : "message"] || r.statusText); e.status = r.status; throw e; }
  return body;
}

/* `link(row)`: where a row leads. The row is clickable with the mouse, and its cell `linkCol` is a
   real link, so the keyboard (Tab, Enter) and screen readers reach it too. On a phone the table
   stacks (class "stack"): each cell on its own line under its heading's name, nothing scrolled away. */
function table(headers, rows, link, linkCol) {
  const col = linkCol || 0;
  return h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: x[1] || null, text: x[0] })))),
    h("tbody", {}, rows.length ? rows.map((r) => {
      const href = link ? link(r.data) : null;
      const tr = h("tr", { class: href ? "click" : null, onclick: href ? (e) => { if (!e.target.closest("a")) location.hash = href; } : null,
        "data-testid": r.testid || null }, r.cells.map((c, i) => h("td", { class: headers[i][1] || null, "data-label": headers[i][0] },
          href && i === col ? h("a", { href, class: "rowlink" }, c) : c)));
      return tr;
    }) : [h("tr", {}, h("td", { colspan: headers.length, class: "muted", text: t("none") }))]));
}

/* ---------- charts (SVG, no library) */
const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const k of kids) el.appendChild(typeof k === "string" ? document.createTextNode(k) : k);
  return el;
}
function niceMax(v) { /* four whole-number gridlines: 1, 2, 5 x 10^n steps */
  const raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw && x >= 1) || 1;
  return step * 4;
}
/* text width in px at the charts' 11px font: CJK glyphs a full em, others about half */
function textWidth(str) { let w = 0; for (const ch of String(str)) w += ch.charCodeAt(0) > 0x2e80 ? 11 : 6.2; return w; }
function barChart(groups, series, opts) {
  const max = niceMax(Math.max(1, ...groups.flatMap((g) => series.map((x) => g[x.key] || 0))));
  const W = 560, top = 10, n = Math.max(1, groups.length);
  const longest = Math.max(0, ...groups.map((g) => textWidth(g.label)));
  let L = Math.ceil(8 + textWidth(String(max))), slot = (W - L) / n;
  const tilt = longest > slot - 4;   /* labels wider than their slot are turned 40°, never cut */
  /* a turned label reaches left of its bar by its width x cos 40°: the margin makes room for every one */
  for (let k = 0; tilt && k < 4; k++) {
    L = Math.max(L, ...groups.map((g, i) => Math.ceil(textWidth(g.label) * Math.cos(40 * Math.PI / 180) - i * slot - slot / 2 + 4)));
    slot = (W - L) / n;
  }
  const B = tilt ? Math.ceil(16 + longest * Math.sin(40 * Math.PI / 180)) : 24;
  const H = 180 + B;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": opts.label, "data-testid": opts.testid || null });
  const gw = slot, bw = Math.max(4, (gw - 12) / series.length);
  for (let i = 0; i <= 4; i++) {
    const y = top + (H - B - top) * (1 - i / 4);
    svg.appendChild(s("line", { x1: L, x2: W, y1: y, y2: y, stroke: "#e5e7eb" }));
    svg.appendChild(s("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, String(Math.round(max * i / 4))));
  }
  groups.forEach((g, i) => {
    series.forEach((x, j) => {
      const v = g[x.key] || 0, hgt = (H - B - top) * v / max;
      const r = s("rect", { x: L + i * gw + 6 + j * bw, y: H - B - hgt, width: bw - 2, height: hgt, fill: x.color });
      r.appendChild(s("title", {}, `${g.label}: ${v}`));
      svg.appendChild(r);
    });
    const x0 = L + i * gw + gw / 2, y0 = H - B + 14;
    svg.appendChild(tilt ? s("text", { x: x0, y: y0, "text-anchor": "end", transform: `rotate(-40 ${x0} ${y0})`, "data-label": g.label }, String(g.label))
      : s("text", { x: x0, y: y0, "text-anchor": "middle", "data-label": g.label }, String(g.label)));
  });
  return h("div", {}, svg, h("div", { class: "legend" }, series.map((x) => h("span", {}, h("i", { bg: x.color }), x.name))));
}
function lineChart(points, series, label, testid) {
  const max = niceMax(Math.max(1, ...points.flatMap((p) => series.map((x) => p[x.key] || 0))));
  const W = 560, H = 200, B = 28, top = 10, L = Math.ceil(10 + textWidth(String(max)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": label, "data-testid": testid || null });
  const X = (i) => L + (W - L - 10) * (points.length <= 1 ? 0.5 : i / (points.length - 1));
  const Y = (v) => top + (H - B - top) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    svg.appendChild(s("line", { x1: L, x2: W, y1: Y(max * i / 4), y2: Y(max * i / 4), stroke: "#e5e7eb" }));
    svg.appendChild(s("text", { x: L - 4, y: Y(max * i / 4) + 4, "text-anchor": "end" }, String(Math.round(max * i / 4))));
  }
  series.forEach((x) => {
    const d = points.map((p, i) => `${i ? "L" : "M"}${X(i).toFixed(1)},${Y(p[x.key] || 0).toFixed(1)}`).join(" ");
    if (d) svg.appendChild(s("path", { d, fill: "none", stroke: x.color, "stroke-width": 2 }));
    points.forEach((p, i) => svg.appendChild(s("circle", { cx: X(i), cy: Y(p[x.key] || 0), r: 2.5, fill: x.color })));
  });
  points.forEach((p, i) => { if (i % Math.ceil(points.length / 6 || 1) === 0) svg.appendChild(s("text", { x: X(i), y: H - 8, "text-anchor": "middle" }, p.day.slice(5))); });
  return h("div", {}, svg, h("div", { class: "legend" }, series.map((x) => h("span", {}, h("i", { bg: x.color }), x.name))));
}

/* ---------- pages */
async function pageLogin() {
  const err = h("div", { class: "err", role: "alert" });
  const form = h("form", { "data-testid": "login-form", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      const r = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.elements.name.value, password: form.elements.password.value }) });
      const body = await r.json();
      if (!r.ok) { err.textContent = t("loginFailed"); return; }
      token = body.token; sessionStorage.setItem("token", token);
      await start();
      location.hash = "#/overview";
    } catch (x) { err.textContent = String(x.message || x); }
  } },
    h("label", {}, t("name"), h("input", { name: "name", autocomplete: "username", required: true })),
    h("label", {}, t("password"), h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { class: "act", type: "submit", text: t("login") }), err);
  main.replaceChildren(h("div", { class: "login panel" }, h("h1", { text: t("brand") }), form));
}

async function pageOverview() {
  const district = me && me.role === "district";  /* the upstream feed is district-wide: district staff only */
  const [o, daily, quota, up] = await Promise.all([api("/api/overview"), api("/api/stats/daily?days=30"),
    api("/api/stats/quota"), district ? api("/api/upstream") : null]);
  const level = o.level === "village" ? t("village") : t("town");
  const groups = o.groups.map((g) => ({ ...g, label: g.name || g.code || "—" }));
  const rows = groups.map((g) => ({ testid: "area-" + (g.code || "none"), data: g,
    cells: [g.label, String(g.sales), String(g.refusals), String(g.open_cases)] }));
  // percent of allowance: categories count in g, mL or mg of active
  // ingredient, and one axis of raw amounts mixed them (up to 400,000,000)
  const q = (quota.towns || []).filter((r) => r.allowance > 0).map((r) => ({ label: (r.name || r.town) + "·" + (words(r.category_name) || r.category),
    pct: Math.round(100 * r.used / r.allowance) })).sort((a, b) => b.pct - a.pct);
  main.replaceChildren(
    h("h1", { text: `${t("overview")} · ${t("today")} ${o.day}` }),
    h("div", { class: "cards" },
      card(t("sales"), o.totals.sales, "sales", `${t("yesterday")} ${o.yesterday.sales}`),
      card(t("refusals"), o.totals.refusals, "refusals", `${t("yesterday")} ${o.yesterday.refusals}`),
      card(t("openCases"), o.totals.open_cases, "open-cases"),
      card(t("online"), `${o.fleet.online}/${o.fleet.total}`, "online"),
      up ? card(t("pending") + " (" + t("upstream") + ")", up.pending, "upstream-pending") : null),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", { text: `${t("byArea")} (${level})` }),
        h("div", { class: "panel" }, table([[level], [t("sales")], [t("refusals")], [t("openCases")]], rows,
          (g) => "#/queue?state=active" + (o.level === "town" && g.code ? "&town=" + encodeURIComponent(g.code) : "")))),
      h("div", {}, h("h2", { text: `${t("openCases")} / ${t("sales")}` }),
        h("div", { class: "panel" }, barChart(groups, [{ key: "sales", name: t("sales"), color: "#0b6e4f" },
          { key: "refusals", name: t("refusals"), color: "#d97706" }, { key: "open_cases", name: t("openCases"), color: "#b91c1c" }], { label: t("byArea"), testid: "chart-area" })))),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", { text: t("perDayG") }), h("div", { class: "panel" },
          lineChart(daily.days, [{ key: "pesticide_g", name: t("pesticideG"), color: "#7c3aed" }], t("perDayG"), "chart-day-g")),
        h("h2", { text: t("perDayMl") }), h("div", { class: "panel" },
          lineChart(daily.days, [{ key: "pesticide_ml", name: t("pesticideMl"), color: "#2563eb" }], t("perDayMl"), "chart-day-ml")),
        h("h2", { text: t("perDayKg") }), h("div", { class: "panel" },
          lineChart(daily.days.map((d) => ({ day: d.day, kg: Math.round(d.fertilizer / 1000) })), [{ key: "kg", name: t("fertilizerKg"), color: "#0b6e4f" }], t("perDayKg"), "chart-day-kg"))),
      h("div", {}, h("h2", { text: t("quotaByTown") }), h("div", { class: "panel" },
        q.length ? barChart(q.slice(0, 12), [{ key: "pct", name: t("usedPct"), color: "#b45309" }], { label: t("quotaByTown"), testid: "chart-quota" })
          : h("p", { class: "muted", text: t("none") })))));
}
function card(label, n, id, note) {
  return h("div", { class: "card", "data-testid": "card-" + id }, h("div", { class: "n", text: String(n) }), h("div", { class: "l", text: label }),
    note ? h("div", { class: "l note", "data-testid": "card-" + id + "-note", text: note }) : null);
}

function params() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

/* a list's page links; the page number lives in the address (the queue page's three lists: qp, vp, wp) */
function pager(key, x) {
  const pages = Math.max(1, Math.ceil(x.total / x.per_page));
  if (pages <= 1) return null;
  const path = location.hash.split("?")[0] || "#/";
  const to = (n) => { const p = params(); p.set(key, String(n)); return path + "?" + p; };
  return h("nav", { class: "pager", "data-testid": "pager-" + key, "aria-label": t("pages") },
    x.page > 1 ? h("a", { href: to(x.page - 1), "data-testid": "prev-" + key, text: "‹ " + t("prev") }) : null,
    h("span", { text: t("pageOf").replace("{n}", x.page).replace("{m}", pages) }),
    x.page < pages ? h("a", { href: to(x.page + 1), "data-testid": "next-" + key, text: t("next") + " ›" }) : null);
}
function sevBadge(n) { return h("span", { class: "sev sev" + n, "data-severity": String(n), text: t("sev" + n) }); }
function groupCells(g) {
  return [sevBadge(g.severity), h("span", {}, codeText(g.code), h("div", { class: "muted sentence", "data-testid": "sentence", text: words(g.sentence) })),
    g.shop_name || g.shop || "—", g.subject ? (g.subject_name || g.subject) : "—",
    g.terminal ? `${g.terminal} #${g.seq ?? ""}` : "—",
    h("span", { "data-testid": "count" }, g.n > 1 ? `×${g.n} · ${fmtTime(g.first_time)} – ${fmtTime(g.last_time)}` : fmtTime(g.last_time)),
    g.case_id ? "#" + g.case_id : "—"];
}


/* ---------- filters and exports (issue 18, item 8): a list's filters live in the page's address,
   so a filtered view is a link to share; the API checks them (an area outside the user's is refused) */
const FILTER_KEYS = ["from", "to", "town", "village", "shop", "subject", "code"];
let shopList = null;   /* the area's shops, towns and villages for the filter menus (one fetch per login) */
async function areaShops() { if (!shopList) shopList = (await api("/api/shops")).shops; return shopList; }
function filterQuery(p, keys) { const q = new URLSearchParams(); for (const k of keys) if (p.get(k)) q.set(k, p.get(k)); return q; }
function withQuery(path, q) { const x = q.toString(); return x ? path + (path.includes("?") ? "&" : "?") + x : path; }
async function filterBar(keys, extra) {
  const p = params();
  const shops = keys.some((k) => ["town", "village", "shop"].includes(k)) ? await areaShops() : [];
  const uniq = (pairs) => [...new Map(pairs.filter(([c]) => c)).entries()];
  const choose = (k, options) => h("select", { name: k, "data-testid": "filter-" + k }, h("option", { value: "", text: t("all") }),
    options.map(([v, name]) => h("option", { value: v, selected: v === p.get(k), text: name || v })));
  const fields = { from: () => h("input", { type: "date", name: "from", "data-testid": "filter-from", value: p.get("from") || "" }),
    to: () => h("input", { type: "date", name: "to", "data-testid": "filter-to", value: p.get("to") || "" }),
    town: () => choose("town", uniq(shops.map((x) => [x.town, x.town_name]))),
    village: () => choose("village", uniq(shops.map((x) => [x.village, x.village_name]))),
    shop: () => choose("shop", shops.map((x) => [x.id, x.name])),
    subject: () => h("input", { name: "subject", "data-testid": "filter-subject", value: p.get("subject") || "", size: 10, pattern: "[A-Za-z0-9_.:-]{1,64}" }),
    code: () => choose("code", Object.keys(codes).filter((c) => /sold|rate|face|travel|split|top_buyer|silent|skew|backlog|hours|gap|chain|over_quota|seq_conflict|bad_mac|unproven|auth_reused/.test(c))
      .map((c) => [c, codeText(c)])) };
  const inputs = keys.map((k) => [k, fields[k]()]);
  const path = location.hash.split("?")[0];
  const form = h("form", { class: "filters", "data-testid": "filters", onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const [k, el] of (extra || [])) if (el.value) n.set(k, el.value);
    for (const [k, el] of inputs) if (el.value) n.set(k, el.value);
    location.hash = path + (n.toString() ? "?" + n : "");
  } }, (extra || []).map(([k, el]) => h("label", {}, t(k), el)), inputs.map(([k, el]) => h("label", {}, t(k), el)),
    h("button", { class: "act", type: "submit", "data-testid": "filter-apply", text: t("filter") }),
    h("a", { href: path, "data-testid": "filter-clear", text: t("clear") }));
  return form;
}
/* the list as a file: the same API call with format=csv|xlsx (the session cookie counts for GETs) */
function exportLinks(apiPath, q, id) {
  const link = (fmt, label) => { const x = new URLSearchParams(q); x.set("format", fmt);
    return h("a", { class: "export", href: withQuery(apiPath, x), download: "", "data-testid": `export-${id}-${fmt}`, text: label }); };
  return h("span", { class: "exports" }, link("csv", t("exportCsv")), link("xlsx", t("exportXlsx")));
}

async function pageQueue() {
  const p = params();
  const state = p.get("state") || "active";
  const vq = filterQuery(p, FILTER_KEYS);
  const q = new URLSearchParams(vq); q.set("state", state);
  const page = (k) => String(Math.max(1, parseInt(p.get(k) || "1", 10) || 1));
  const wq = new URLSearchParams(vq); wq.set("list", "watch");
  const [list, viol, watch] = await Promise.all([
    api(withQuery("/api/queue?" + q, new URLSearchParams({ page: page("qp") }))),
    api(withQuery(withQuery("/api/violations/groups", vq), new URLSearchParams({ page: page("vp") }))),
    api(withQuery("/api/violations/groups?" + wq, new URLSearchParams({ page: page("wp") })))]);
  const stateSel = h("select", { name: "state", "data-testid": "filter-state" },
    ["active", "open", "assigned", "inspected", "closed", "all"].map((x) => h("option", { value: x, selected: x === state, text: t(x) })));
  const filters = await filterBar(FILTER_KEYS, [["state", stateSel]]);
  const groupHead = [[t("severity")], [t("code")], [t("shop")], [t("subject")], [t("record"), "hide-sm"], [t("times")], [t("caseNo"), "hide-sm"]];
  main.replaceChildren(h("h1", { text: t("queue") }), filters,
    h("h2", { text: t("inspectQueue") + (list.total ? ` (${list.total})` : "") }, " ", exportLinks("/api/queue", q, "queue")),
    h("div", { class: "panel", "data-testid": "queue" }, table([[t("severity")], [t("caseNo")], [t("state")], [t("code")], [t("shop")], [t("subject"), "hide-sm"],
      [t("town"), "hide-sm"], [t("level"), "hide-sm"], [t("assignee")], [t("deadline")]],
      list.cases.map((c) => ({ data: c, testid: "case-row-" + c.id, cells: [
        sevBadge(c.severity), "#" + c.id, badge(c.state), c.codes.split(",").map(codeText).join("、"), c.shop_name || c.shop || "—",
        c.subject ? (c.subject_name || c.subject) : "—", c.town_name || "—", t(c.level + "_l"), c.assignee ? (c.assignee_name || c.assignee) : "—",
        h("span", { class: c.overdue ? "err" : "" }, fmtTime(c.deadline), c.overdue ? " · " + t("overdue") : "")] })),
      (c) => "#/case/" + c.id, 1), pager("qp", list)),
    h("h2", { text: t("violations") + (viol.total ? ` (${viol.total})` : "") }, " ", exportLinks("/api/violations/groups", vq, "violations")),
    h("div", { class: "panel", "data-testid": "violations" }, table(groupHead,
      viol.groups.map((g) => ({ data: g, testid: "violation-row-" + g.latest, cells: groupCells(g) })),
      (g) => "#/case/" + g.case_id, 1), pager("vp", viol)),
    h("h2", { text: t("watchList") + (watch.total ? ` (${watch.total})` : "") }, " ", exportLinks("/api/violations/groups", wq, "watch")),
    h("p", { class: "muted", text: t("watchHint") }),
    h("div", { class: "panel", "data-testid": "watch" }, table(groupHead,
      watch.groups.map((g) => ({ data: g, testid: "watch-row-" + g.latest, cells: groupCells(g) })),
      /* a watch-list finding has no case (none is opened for it): its row leads to the shop */
      (g) => g.case_id ? "#/case/" + g.case_id : g.shop ? "#/shop/" + encodeURIComponent(g.shop) : null, 1), pager("wp", watch)));
}

async function pageCase(id) {
  const c = await api("/api/cases/" + encodeURIComponent(id));
  const err = h("div", { class: "err", role: "alert" });
  const act = (path, body) => async (e) => {
    e.preventDefault(); err.textContent = "";
    try { await api(`/api/cases/${c.id}/${path}`, { method: "POST", json: body() }); await render(); }
    catch (x) { err.textContent = x.message; }
  };
  const forms = [];
  const canAct = c.state !== "closed";
  if (canAct && (c.state === "open" || c.state === "assigned")) {
    const who = h("select", { name: "assignee", "data-testid": "assignee" }, c.assignees.map((n) => h("option", { value: n, selected: n === c.assignee, text: person(n, c.user_names) })));
    forms.push(h("form", { class: "row", "data-testid": "assign-form", onsubmit: act("assign", () => ({ assignee: who.value })) },
      h("label", {}, t("assignee"), who), h("button", { class: "act", type: "submit", text: t("assign") })));
    const res = h("select", { name: "result", "data-testid": "result" }, ["violation_found", "no_violation_found", "rectified_on_site"].map((x) => h("option", { value: x, text: t(x) })));
    const notes = h("textarea", { name: "notes", "data-testid": "inspect-notes", maxlength: 2000 });
    forms.push(h("form", { class: "row", "data-testid": "inspect-form", onsubmit: act("inspect", () => ({ result: res.value, notes: notes.value || null })) },
      h("label", {}, t("result"), res), h("label", {}, t("notes"), notes), h("button", { class: "act", type: "submit", text: t("inspect") })));
  }
  if (canAct) {
    const file = h("input", { type: "file", accept: "image/jpeg,image/png", capture: "environment", "data-testid": "photo-file" });
    forms.push(h("form", { class: "row", "data-testid": "photo-form", onsubmit: async (e) => {
      e.preventDefault(); err.textContent = "";
      const f = file.files[0]; if (!f) return;
      try { await api(`/api/cases/${c.id}/photos`, { method: "POST", body: f, headers: { "Content-Type": f.type || "image/jpeg" } }); await render(); }
      catch (x) { err.textContent = x.message; }
    } }, h("label", {}, t("photo"), file), h("button", { class: "act", type: "submit", text: t("upload") })));
  }
  const pend = c.state === "inspected" ? c.pending_close : null;
  if (pend) {
    /* two-person rule: the close waits for another user of c.confirm_role or above */
    const notes = h("textarea", { name: "notes", "data-testid": "confirm-notes", maxlength: 2000 });
    const answer = (decision) => act("confirm", () => ({ decision, outcome: pend.outcome, notes: notes.value || null }));
    const mine = me && me.name === pend.actor;
    forms.push(h("form", { class: "row", "data-testid": "pending-close", onsubmit: answer("confirm") },
      h("div", {}, h("strong", { text: `${t("pendingClose")}: ${t(pend.outcome)}` }), " · ", `${t("proposedBy")} ${person(pend.actor, c.user_names)}`,
        pend.notes ? h("div", { text: pend.notes }) : null),
      c.can_confirm || mine ? h("label", {}, t("notes"), notes) : null,
      c.can_confirm ? h("button", { class: "act", type: "submit", "data-testid": "confirm-close", text: t("confirmClose") }) : null,
      c.can_confirm || mine ? h("button", { type: "button", "data-testid": "reject-close", text: t(mine ? "withdrawClose" : "rejectClose"),
        onclick: answer("reject") }) : null));
  } else if (c.state === "inspected") {
    const out = h("select", { name: "outcome", "data-testid": "outcome" }, ["confirmed", "penalised", "dismissed"].map((x) => h("option", { value: x, text: t(x) })));
    const notes = h("textarea", { name: "notes", "data-testid": "close-notes", maxlength: 2000 });
    const rule = (c.confirm_outcomes || []).length ? h("div", { class: "muted", "data-testid": "two-person-rule",
      text: t("needsSecond").replace("{role}", t(c.confirm_role + "_l")) + c.confirm_outcomes.map(t).join("、") }) : null;
    forms.push(h("form", { class: "row", "data-testid": "close-form", onsubmit: act("close", () => ({ outcome: out.value, notes: notes.value || null })) },
      h("label", {}, t("outcome"), out), h("label", {}, t("notes"), notes), h("button", { class: "act", type: "submit", text: t("close") }), rule));
  }
  const photos = c.photos.map((p) => {
    const img = h("img", { alt: "photo " + p.id, width: 120 });
    fetch(`/api/cases/${c.id}/photos/${p.id}`, { headers: { Authorization: "Bearer " + token } }).then((r) => r.blob()).then((b) => { img.src = URL.createObjectURL(b); });
    return img;
  });
  main.replaceChildren(
    h("h1", { "data-testid": "case-title" }, `${t("caseNo")} #${c.id} `, badge(c.state), c.outcome ? h("span", { class: "badge b-closed", "data-testid": "case-outcome", text: " " + t(c.outcome) }) : null),
    h("p", {}, h("a", { class: "export", href: `/api/cases/${c.id}/sheet.pdf`, target: "_blank", rel: "noopener", "data-testid": "print-sheet", text: t("printSheet") })),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("dl", { class: "kv" },
        h("dt", { text: t("code") }), h("dd", { text: c.codes.split(",").map(codeText).join("、") }),
        h("dt", { text: t("shop") }), h("dd", {}, c.shop ? h("a", { href: "#/shop/" + encodeURIComponent(c.shop), text: c.shop_name || c.shop }) : "—"),
        h("dt", { text: t("subject") }), h("dd", {}, c.subject ? h("a", { href: "#/subject/" + encodeURIComponent(c.subject), "data-testid": "case-subject", title: c.subject, text: c.subject_name || c.subject }) : "—",
          c.grade ? h("span", { class: "badge g-" + c.grade.grade, "data-testid": "case-grade", text: " " + t("grade") + " " + c.grade.grade }) : null),
        h("dt", { text: t("town") }), h("dd", { text: [c.town_name, c.village_name].filter(Boolean).join(" / ") || "—" }),
        h("dt", { text: t("level") }), h("dd", { text: t(c.level + "_l") }),
        h("dt", { text: t("assignee") }), h("dd", { "data-testid": "case-assignee", title: c.assignee || null, text: person(c.assignee, c.user_names) }),
        h("dt", { text: t("deadline") }), h("dd", { "data-testid": "case-deadline", text: fmtTime(c.deadline) }),
        h("dt", { text: t("result") }), h("dd", { text: c.result ? t(c.result) : "—" })),
        err, forms, h("div", {}, photos)),
      h("div", { class: "panel" }, h("h2", { text: t("timeline") }),
        h("ol", { class: "timeline", "data-testid": "timeline" }, c.timeline.map((e) => h("li", {},
          h("strong", { text: t(e.action + "_a") }), " · ", e.actor === "system" ? t("system") : person(e.actor, c.user_names), " · ", h("span", { class: "muted", text: fmtTime(e.time) }),
          e.detail.assignee ? h("div", { text: person(e.detail.assignee, c.user_names) }) : null,
          e.detail.notes ? h("div", { text: e.detail.notes }) : null,
          e.detail.code ? h("div", { class: "muted", text: codeText(e.detail.code) }) : null,
          e.detail.result ? h("div", { text: t(e.detail.result) }) : null,
          e.detail.outcome ? h("div", { text: t(e.detail.outcome) }) : null))))),
    h("h2", { text: t("violations") }),
    h("div", { class: "panel", "data-testid": "case-violations" }, table([[t("time")], [t("code")], [t("detail")], [t("record"), "hide-sm"]],
      c.violations.map((v) => ({ data: v, testid: "case-violation-" + v.id, cells: [fmtTime(v.time), codeText(v.code),
        h("span", { "data-testid": "sentence", text: words(v.sentence) }), v.terminal ? `${v.terminal} #${v.seq ?? ""}` : "—"] })))));
}

/* registry fields by name, and their coded values in words (the code on hover) */
function regLabel(k) { return T[lang]["reg_" + k] || (/^id_|idcard|credit_code|uscc/.test(k) ? t("idNumber") : k); }
function regValue(k, v, areas) {
  if ((k === "town" || k === "village") && areas && areas[v]) return areas[v];
  if (k === "kind" || k === "status") return T[lang][k + "_" + v] || String(v);
  return String(v);
}

async function pageSubject(id, reveal) {
  const fq = filterQuery(params(), ["from", "to", "shop"]);
  const x = await api(withQuery("/api/subjects/" + encodeURIComponent(id) + "?page=" + pageParam() + (reveal ? "&reveal=true" : ""), fq));
  const bar = await filterBar(["from", "to", "shop"]);
  const reg = x.registry || {};
  const bal = x.balance || {};
  main.replaceChildren(
    h("h1", { title: x.id }, `${t("subject")} ${x.name || x.id} `, h("span", { class: "grade g-" + x.grade.grade, "data-testid": "subject-grade", text: x.grade.grade })),
    h("p", { class: "muted", text: `${t("grade")}: ${x.grade.confirmed} / ${x.grade.months}` }),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", { text: t("registry") }), h("dl", { class: "kv" },
        Object.entries(reg).filter(([k, v]) => typeof v !== "object").flatMap(([k, v]) => [h("dt", { text: regLabel(k) }),
          h("dd", { "data-testid": "reg-" + k, title: k === "town" || k === "village" || k === "kind" || k === "status" ? String(v) : null, text: regValue(k, v, x.area_names) })])),
        /* full ID numbers: district staff only, on request, each read audited */
        me && me.role === "district" && !reveal ? h("button", { class: "act", type: "button", "data-testid": "reveal-id", text: t("revealId"),
          onclick: () => pageSubject(id, true) }) : null),
      h("div", { class: "panel" }, h("h2", { text: t("allowance") }), table([[t("category")], [t("period")], [t("allowance")], [t("used")], [t("remaining")]],
        Object.entries(bal).map(([cat, b]) => ({ data: b, testid: "balance-" + cat, cells: [h("span", { title: cat, text: words(b.name) || cat }), b.period,
          (b.text || {}).allowance || String(b.allowance), (b.text || {}).used || String(b.used), (b.text || {}).remaining || String(b.remaining)] }))))),
    h("h2", { text: t("purchases") }, " ", exportLinks("/api/subjects/" + encodeURIComponent(id), fq, "purchases")), bar,
    h("div", { class: "panel", "data-testid": "purchases" }, table([[t("time")], [t("shop")], [t("state")], [t("items")], [t("identity"), "hide-sm"], [t("mode"), "hide-sm"]],
      x.purchases.map((p) => ({ data: p, cells: [fmtTime(p.time), p.shop_name || p.shop || "—", t(p.type === "sale" ? "sales" : p.type === "refusal" ? "refusals" : "voids"),
        items(p.items), identityText(p.identity), modeText(p.mode)] }))), pager("page", x.purchases_page)),
    h("h2", { text: t("cases") }, " ", exportLinks("/api/cases", new URLSearchParams({ subject: id }), "subject-cases")),
    h("div", { class: "panel" }, table([[t("caseNo")], [t("state")], [t("code")], [t("outcome")]],
      x.cases.map((c) => ({ data: c, cells: ["#" + c.id, badge(c.state), c.codes.split(",").map(codeText).join("、"), c.outcome ? t(c.outcome) : "—"] })),
      (c) => "#/case/" + c.id)));
}

function fleetTable(list, now) {
  return table([[t("terminal")], [t("shop")], [t("state")], [t("lastSeen")], [t("backlog")], [t("versions"), "hide-sm"], [t("skew"), "hide-sm"]],
    list.map((x) => ({ data: x, testid: "terminal-" + x.id, cells: [x.id, x.shop_name || x.shop || "—",
      h("span", { class: "badge b-" + (x.state === "online" ? "online" : "offline"), "data-testid": "state-" + x.id, text: x.state === "online" ? t("online").replace(/终端|Terminals /, "") : t("offline") }),
      ago(x.last_seen, now), String(x.backlog),
      Object.entries(x.versions || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—",
      x.skew_ms === null || x.skew_ms === undefined ? "—" : `${(x.skew_ms / 1000).toFixed(1)} ${t("seconds")}`] })),
    (x) => x.shop ? "#/shop/" + encodeURIComponent(x.shop) : null);
}

async function pageShop(id) {
  const fq = filterQuery(params(), ["from", "to", "subject"]);
  const x = await api(withQuery("/api/shops/" + encodeURIComponent(id) + "?page=" + pageParam(), fq));
  const bar = await filterBar(["from", "to", "subject"]);
  const sh = x.shop;
  main.replaceChildren(
    h("h1", { text: `${t("shop")} ${sh.name}` }),
    h("div", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", { text: t("town") }), h("dd", { text: [sh.town_name, sh.village_name].filter(Boolean).join(" / ") }),
      h("dt", { text: t("designated") }), h("dd", { text: sh.designated ? t("yes") : t("no") }),
      h("dt", { text: t("hours") }), h("dd", { text: sh.hours || "—" }))),
    h("h2", { text: t("terminals") }), h("div", { class: "panel" }, fleetTable(x.terminals, x.now)),
    h("h2", { text: t("openCases") }, " ", exportLinks("/api/cases", new URLSearchParams({ shop: id, state: "active" }), "shop-cases")),
    h("div", { class: "panel" }, table([[t("caseNo")], [t("state")], [t("code")], [t("subject")], [t("assignee")]],
      x.cases.map((c) => ({ data: c, cells: ["#" + c.id, badge(c.state), c.codes.split(",").map(codeText).join("、"),
        c.subject ? (c.subject_name || c.subject) : "—", c.assignee ? (c.assignee_name || c.assignee) : "—"] })),
      (c) => "#/case/" + c.id)),
    h("h2", { text: t("ledger") }, " ", exportLinks("/api/shops/" + encodeURIComponent(id), fq, "ledger")), bar,
    h("div", { class: "panel", "data-testid": "ledger" }, table([[t("time")], [t("record")], [t("state")], [t("subject")], [t("items")], [t("identity"), "hide-sm"]],
      x.ledger.map((r) => ({ data: r, cells: [fmtTime(r.time), `${r.terminal} #${r.seq}`, t(r.type === "sale" ? "sales" : r.type === "refusal" ? "refusals" : "voids"),
        r.subject ? h("a", { href: "#/subject/" + encodeURIComponent(r.subject), title: r.subject, text: r.subject_name || r.subject }) : "—",
        h("span", {}, items(r.items), r.reasons.length ? " · " + r.reasons.map(codeText).join("、") : ""), identityText(r.identity)] }))),
      pager("page", x.ledger_page)));
}

async function pageFleet() {
  const fq = filterQuery(params(), ["town", "village", "shop", "from", "to"]);
  const x = await api(withQuery("/api/terminals?page=" + pageParam(), fq));
  const bar = await filterBar(["town", "village", "shop", "from", "to"]);
  main.replaceChildren(h("h1", { text: t("fleet") }),
    h("div", { class: "cards" }, card(t("online"), `${x.online}/${x.total}`, "fleet-online")),
    h("h2", { text: t("terminals") }, " ", exportLinks("/api/terminals", fq, "terminals")), bar, h("div", { class: "panel", "data-testid": "fleet-table" }, fleetTable(x.terminals, x.now), pager("page", x)));
}

async function pageUpstream() {
  const u = await api("/api/upstream");
  main.replaceChildren(h("h1", { text: t("upstream") }),
    h("div", { class: "cards" }, card(t("pending"), u.pending, "up-pending"), card(t("sent"), u.sent, "up-sent"), card(t("failures"), u.failures || 0, "up-failures")),
    h("div", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", { text: t("lastSuccess") }), h("dd", { text: fmtTime(u.last_success) }),
      h("dt", { text: t("lastError") }), h("dd", { "data-testid": "up-error", text: u.last_error || "—" }),
      h("dt", { text: t("nextAttempt") }), h("dd", { text: fmtTime(u.next_attempt) }))));
}


/* ---------- search (issue 18, item 8): one box, results grouped by kind, each a link */
async function pageSearch() {
  const q = (params().get("q") || "").trim();
  const box = document.getElementById("search-q");
  if (box && document.activeElement !== box) box.value = q;
  if (!q) { main.replaceChildren(h("h1", { text: t("search") }), h("p", { class: "muted", text: t("searchHint") })); return; }
  const r = await api("/api/search?" + new URLSearchParams({ q }));
  const group = (id, title, list, row) => [h("h2", { text: `${title} (${list.length})` }),
    h("ul", { class: "results panel", "data-testid": "results-" + id }, list.length ? list.map(row) : h("li", { class: "muted", text: t("none") }))];
  main.replaceChildren(h("h1", { text: `${t("searchResults")}: ${q}` }),
    ...group("subjects", t("farmers"), r.subjects, (x) => h("li", {}, h("a", { href: "#/subject/" + encodeURIComponent(x.id), "data-testid": "result-subject-" + x.id, text: x.name || x.id }),
      h("span", { class: "muted", text: ` · ${x.id} · ${t("by_" + x.by)}` }))),
    ...group("shops", t("shops"), r.shops, (x) => h("li", {}, h("a", { href: "#/shop/" + encodeURIComponent(x.id), "data-testid": "result-shop-" + x.id, text: x.name }),
      h("span", { class: "muted", text: " · " + [x.town_name, x.village_name].filter(Boolean).join(" / ") }))),
    ...group("products", t("products"), r.products, (x) => h("li", {}, h("a", { href: "#/product/" + encodeURIComponent(x.reg), "data-testid": "result-product-" + x.reg, text: x.name }),
      h("span", { class: "muted", text: " · " + x.reg }))));
}

async function pageProduct(reg) {
  const x = await api("/api/products/" + encodeURIComponent(reg));
  const packs = Object.values(x.packs || {}).map((k) => `${k.net} ${k.unit}`).join("、");
  main.replaceChildren(h("h1", { "data-testid": "product-title", text: `${t("product")} ${x.name || x.reg}` }),
    h("div", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", { text: t("reg") }), h("dd", { text: x.reg_text ? `${x.reg} · ${x.reg_text}` : x.reg }),
      h("dt", { text: t("kind") }), h("dd", { text: x.kind === "pesticide" ? t("pesticide") : x.kind === "fertilizer" ? t("fertilizer") : (x.kind || "—") }),
      h("dt", { text: t("status") }), h("dd", { "data-testid": "product-status", text: t("prod_" + (x.status || "normal")) }),
      h("dt", { text: t("holder") }), h("dd", { text: x.holder || "—" }),
      h("dt", { text: t("items") }), h("dd", { text: packs || "—" }))));
}

/* ---------- the map (issue 18, item 9): Web Mercator from the grid's own coordinates, no tile server
   unless the deployment configured its own (`[map] tiles`) */
function mercator(lat, lon) {
  const r = lat * Math.PI / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2];
}
async function pageMap() {
  const m = await api("/api/map");
  const placed = m.shops.filter((x) => x.lat !== null && x.lon !== null);
  /* drawn at the size it is shown (names stay legible on a phone); room for a town's name above its top shop */
  const W = Math.round(Math.max(300, Math.min(900, main.clientWidth - 48))), H = Math.round(W * 0.62), pad = W < 500 ? 44 : 70;
  const pts = placed.map((x) => mercator(x.lat, x.lon));
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const span = Math.max(x1 - x0, (y1 - y0) * W / H, 1e-6);
  const ppu = (W - 2 * pad) / span;   /* pixels per Mercator unit, the same both ways */
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const X = (u) => W / 2 + (u - cx) * ppu, Y = (v) => H / 2 + (v - cy) * ppu;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": t("map"), "data-testid": "map", class: "map" });
  svg.appendChild(s("rect", { x: 0, y: 0, width: W, height: H, fill: "#f8fafc" }));
  if (m.tiles && placed.length) {
    const z = Math.max(0, Math.min(18, Math.floor(Math.log2(ppu / 256))));
    const n = Math.pow(2, z), size = ppu / n;
    const left = cx - W / 2 / ppu, top = cy - H / 2 / ppu;
    for (let tx = Math.floor(left * n); tx <= Math.floor((left + W / ppu) * n); tx++)
      for (let ty = Math.floor(top * n); ty <= Math.floor((top + H / ppu) * n); ty++)
        svg.appendChild(s("image", { href: m.tiles.replace("{z}", z).replace("{x}", tx).replace("{y}", ty), x: X(tx / n), y: Y(ty / n), width: size, height: size, "data-testid": "tile" }));
  }
  /* towns first, then a village's name only where it overlaps no name already drawn: shops close
     together wrote their villages' and towns' names over each other (a visitor's first look at the demo);
     a village left unnamed is still in each shop's title and the table below */
  const boxes = [];
  const free = (b) => !boxes.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
  for (const a of m.areas.filter((a) => a.lat !== null).sort((p, q) => (p.level === "town" ? 0 : 1) - (q.level === "town" ? 0 : 1))) {
    const [u, v] = mercator(a.lat, a.lon);
    const town = a.level === "town", name = a.name || a.code;
    const x = X(u), w = textWidth(name) * (town ? 1.35 : 1.0), hgt = town ? 18 : 14;
    const at = (dy) => ({ x: x - w / 2, y: Y(v) - (town ? 26 : 14) + dy - hgt + 3, w, h: hgt, dy });
    /* a town's name moves up or below its shops until it is clear of the other towns' */
    const box = town ? ([0, -20, 44, -40, 64].map(at).find(free) || at(0)) : at(0);
    if (!town && !free(box)) continue;
    boxes.push(box);
    const y = Y(v) - (town ? 26 : 14) + box.dy;
    svg.appendChild(s("text", { x, y, "text-anchor": "middle", class: "area-" + a.level, "data-testid": "area-" + a.code }, name));
  }
  placed.forEach((x, i) => {
    const r = 6 + 3 * Math.sqrt(x.open_cases);
    const color = !x.open_cases ? "#15803d" : x.severity <= 2 ? "#b91c1c" : "#d97706";
    const link = s("a", { href: "#/shop/" + encodeURIComponent(x.id), "data-testid": "map-shop-" + x.id, "data-open": String(x.open_cases) },
      s("circle", { cx: X(pts[i][0]), cy: Y(pts[i][1]), r, fill: color, "fill-opacity": 0.8, stroke: "#fff", "stroke-width": 1.5 }),
      s("title", {}, `${x.name} · ${t("openCases")} ${x.open_cases}`),
      x.open_cases ? s("text", { x: X(pts[i][0]), y: Y(pts[i][1]) + 4, "text-anchor": "middle", class: "count" }, String(x.open_cases)) : "");
    svg.appendChild(link);
  });
  const unplaced = m.shops.filter((x) => x.lat === null || x.lon === null);
  main.replaceChildren(h("h1", { text: t("map") }), h("p", { class: "muted", text: t("mapHint") }),
    h("div", { class: "panel" }, svg),
    h("h2", { text: t("openCases") }),
    h("div", { class: "panel", "data-testid": "map-table" }, table([[t("shop")], [t("town")], [t("openCases")]],
      m.shops.filter((x) => x.open_cases).sort((a, b) => b.open_cases - a.open_cases).map((x) => ({ data: x, testid: "map-row-" + x.id,
        cells: [x.name, [x.town_name, x.village_name].filter(Boolean).join(" / "), String(x.open_cases)] })), (x) => "#/queue?shop=" + encodeURIComponent(x.id))),
    ...(unplaced.length ? [h("p", { class: "muted", "data-testid": "no-coords", text: `${t("noCoords")}: ${unplaced.map((x) => x.name).join("、")}` })] : []));
}

/* ---------- trends (issue 18, item 9): per week in the district's calendar; counts on one chart,
   grams, millilitres and kilograms each on their own */
async function pageTrends() {
  const p = params();
  const by = ["town", "village", "shop"].includes(p.get("by")) ? p.get("by") : (me && me.role === "village" ? "shop" : me && me.role === "town" ? "village" : "town");
  const w = await api("/api/stats/weekly?" + new URLSearchParams({ by, weeks: "12" }));
  const chosen = w.groups.find((g) => g.code === p.get("group"));
  const series = (chosen ? chosen.weeks : w.totals).map((x) => ({ ...x, day: x.week, fertilizer_kg: Math.round(x.fertilizer_g / 1000) }));
  const bySel = h("select", { name: "by", "data-testid": "trend-by" }, ["town", "village", "shop"].map((x) => h("option", { value: x, selected: x === by, text: t(x) })));
  const groupSel = h("select", { name: "group", "data-testid": "trend-group" }, h("option", { value: "", text: t("all") }),
    w.groups.map((g) => h("option", { value: g.code || "", selected: chosen === g, text: g.name || g.code || "—" })));
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault();
    const n = new URLSearchParams({ by: bySel.value }); if (groupSel.value && bySel.value === by) n.set("group", groupSel.value);
    location.hash = "#/trends?" + n; } },
    h("label", {}, t("byGroup"), bySel), h("label", {}, t(by), groupSel), h("button", { class: "act", type: "submit", text: t("filter") }));
  const sum = (g, k) => g.weeks.reduce((a, x) => a + x[k], 0);
  main.replaceChildren(h("h1", { text: t("trends") + (chosen ? " · " + (chosen.name || chosen.code) : "") }), form,
    h("div", { class: "grid2" },
      h("div", {}, h("h2", { text: t("perWeek") }), h("div", { class: "panel" }, lineChart(series, [{ key: "sales", name: t("sales"), color: "#0b6e4f" },
        { key: "refusals", name: t("refusals"), color: "#d97706" }, { key: "violations", name: t("violations"), color: "#b91c1c" }], t("perWeek"), "chart-week-counts"))),
      h("div", {}, h("h2", { text: t("fertilizerKg") }), h("div", { class: "panel" }, lineChart(series, [{ key: "fertilizer_kg", name: t("fertilizerKg"), color: "#0b6e4f" }], t("fertilizerKg"), "chart-week-kg")))),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", { text: t("pesticideG") }), h("div", { class: "panel" }, lineChart(series, [{ key: "pesticide_g", name: t("pesticideG"), color: "#7c3aed" }], t("pesticideG"), "chart-week-g"))),
      h("div", {}, h("h2", { text: t("pesticideMl") }), h("div", { class: "panel" }, lineChart(series, [{ key: "pesticide_ml", name: t("pesticideMl"), color: "#2563eb" }], t("pesticideMl"), "chart-week-ml")))),
    h("h2", { text: `${t(by)} · ${w.weeks[0]} – ${w.weeks[w.weeks.length - 1]}` }),
    h("div", { class: "panel", "data-testid": "trend-table" }, table([[t(by)], [t("sales")], [t("refusals")], [t("violations")], [t("pesticideG")], [t("pesticideMl")], [t("fertilizerKg")]],
      w.groups.map((g) => ({ data: g, testid: "trend-" + (g.code || "none"), cells: [g.name || g.code || "—", String(sum(g, "sales")), String(sum(g, "refusals")),
        String(sum(g, "violations")), String(sum(g, "pesticide_g")), String(sum(g, "pesticide_ml")), String(Math.round(sum(g, "fertilizer_g") / 1000))] })),
      (g) => "#/trends?" + new URLSearchParams({ by, group: g.code || "" }))));
}

/* ---------- shell */
const ROUTES = [["overview", pageOverview], ["queue", pageQueue], ["map", pageMap], ["trends", pageTrends], ["fleet", pageFleet], ["upstream", pageUpstream]];

function drawNav() {
  document.getElementById("brand").textContent = t("brand");
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  const nav = document.getElementById("nav");
  const cur = (location.hash.slice(2).split(/[/?]/)[0]) || "overview";
  nav.replaceChildren(...(me ? ROUTES.filter(([k]) => k !== "upstream" || me.role === "district").map(([k]) => h("a", { href: "#/" + k, class: k === cur ? "on" : null, "data-testid": "nav-" + k, text: t(k) })) : []));
  const lo = document.getElementById("logout");
  lo.hidden = !me; lo.textContent = t("logout");
  document.getElementById("who").textContent = me ? `${me.display_name || me.name} · ${me.area_name || me.area}` : "";
  const sf = document.getElementById("search");
  sf.hidden = !me;
  const box = document.getElementById("search-q");
  box.placeholder = t("searchHint"); box.title = t("searchHint"); box.setAttribute("aria-label", t("search"));
  document.getElementById("search-go").textContent = t("search");
}

let rendering = false;
let moved = false;   /* the address changed while a page was being drawn */
let changesSeen = 0;   /* live changes announced, and (data-live on main) the last one a finished redraw includes */
async function render() {
  const upto = changesSeen;
  drawNav();
  if (!token || !me) return pageLogin();
  const [path] = location.hash.slice(2).split("?");
  const [page, id] = path.split("/");
  rendering = true;
  try {
    if (page === "case" && id) await pageCase(id);
    else if (page === "subject" && id) await pageSubject(id);
    else if (page === "shop" && id) await pageShop(id);
    else if (page === "product" && id) await pageProduct(id);
    else if (page === "search") await pageSearch();
    else await (ROUTES.find(([k]) => k === page) || ROUTES[0])[1]();
  } catch (x) {
    if (x.message !== "unauthenticated") main.replaceChildren(h("div", { class: "panel err", role: "alert", text: x.message }));
  } finally {
    rendering = false; main.setAttribute("data-rendered", String(Date.now())); main.setAttribute("data-live", String(upto));
    if (moved) { moved = false; setTimeout(render, 0); }  /* the user went elsewhere meanwhile: draw that page last */
    else if (stale) setTimeout(refresh, 0);  /* a change that came while this page was being fetched */
  }
}

/* Live refresh redraws the page, but never under the user's hands: not while they type in a form,
   and not while they hold a text selection on the page (a redraw would clear it); the redraw waits
   until they are done, and a change that arrives during a redraw is drawn after it. Whatever link
   or button had the keyboard focus has it again after any redraw: the focus is taken when the page
   is replaced, not when its data was asked for (the user may have moved on in between). */
let pending = null;
let stale = false;
function busy() {
  const a = document.activeElement;
  if (a && ["INPUT", "TEXTAREA", "SELECT"].includes(a.tagName) && main.contains(a)) return true;
  const sel = window.getSelection();
  return !!(sel && !sel.isCollapsed && main.contains(sel.anchorNode));
}
function focusKey(el) {
  if (!el || el === document.body || el === main) return null;
  const tid = el.closest("[data-testid]");
  return { testid: tid ? tid.getAttribute("data-testid") : null, href: el.getAttribute("href"), tag: el.tagName, text: el.textContent };
}
function refocus(key) {
  if (!key) return;
  const scope = key.testid ? document.querySelector(`[data-testid="${CSS.escape(key.testid)}"]`) : document.body;
  if (!scope) return;
  const same = [scope, ...scope.querySelectorAll(key.tag)].find((el) => el.tagName === key.tag &&
    (key.href ? el.getAttribute("href") === key.href : el.textContent === key.text));
  if (same) same.focus({ preventScroll: true });
}
async function refresh() {
  if (rendering || busy()) { stale = true; return; }
  stale = false;
  await render();
}
const replaceMain = main.replaceChildren.bind(main);
main.replaceChildren = (...kids) => {
  const key = focusKey(document.activeElement);
  replaceMain(...kids);
  refocus(key);
};
document.addEventListener("selectionchange", () => { if (stale) { clearTimeout(pending); pending = setTimeout(refresh, 400); } });
document.addEventListener("focusout", () => { if (stale) { clearTimeout(pending); pending = setTimeout(refresh, 400); } });
function live() {
  if (source) source.close();
  source = new EventSource("/api/events");
  const dot = document.getElementById("live");
  source.onopen = () => dot.classList.add("on");
  source.onerror = () => dot.classList.remove("on");
  source.addEventListener("end", () => logout(false));  /* the session ended: logged out, disabled, password reset */
  source.addEventListener("change", () => {
    changesSeen += 1;
    clearTimeout(pending);
    pending = setTimeout(refresh, 250);
  });
}

async function start() {
  try { me = await api("/api/me"); codes = await api("/api/codes"); live(); }
  catch (x) { me = null; }
}

function logout(callApi) {
  if (callApi && token) fetch("/api/logout", { method: "POST", headers: { Authorization: "Bearer " + token } });
  token = null; me = null; shopList = null; sessionStorage.removeItem("token");
  if (source) { source.close(); source = null; }
  render();
}

document.getElementById("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); render(); });
document.getElementById("logout").addEventListener("click", () => logout(true));
/* the search button is type=button (the login form's is the page's submit button); Enter in the box
   submits the one-field form implicitly */
function runSearch(e) {
  if (e) e.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  if (q) location.hash = "#/search?" + new URLSearchParams({ q });
}
document.getElementById("search").addEventListener("submit", runSearch);
document.getElementById("search-go").addEventListener("click", runSearch);
/* One page is drawn at a time: a page asked for while another is still being fetched (a live
   refresh of the overview, say) is drawn after it, so the slower fetch can never draw the page
   the user left over the one they went to. */
window.addEventListener("hashchange", () => { if (rendering) moved = true; else render(); });
(async () => { if (token) await start(); render(); })();
