// The kiosk page: renders the counter state the agent pushes (server-sent
// events) and sends the clerk's taps back as small POSTs. No framework and no
// assets from the internet. Chinese first; the EN button switches language.
//
// The page first gets its session (GET /api/session: an HttpOnly cookie and a
// CSRF token) and sends the token in X-CSRF-Token with every change; the
// agent refuses a change without it (terminal_ui/security.py). Signing in
// gives a new session and token, and the event stream is opened again for it.
// A session the agent no longer knows (it restarted) means a new one: the
// sign-in screen again.
"use strict";

const T = {
  online: ["联网", "Online"], offline: ["离线", "Offline"],
  backlog: ["待上传", "To upload"], lastSync: ["上次同步", "Last sync"], never: ["从未", "never"],
  catalogue: ["目录", "Catalogue"], params: ["政策", "Policy"],
  signinTitle: ["店员登录", "Clerk sign-in"], signin: ["登录", "Sign in"], clear: ["清除", "Clear"],
  signout: ["退出", "Sign out"], invite: ["请刷卡或看摄像头", "Tap the card or look at the camera"],
  inviteSub: ["把主体信息卡放在读卡区", "Place the subject card on the reader"],
  ledger: ["台账", "Ledger"], back: ["返回", "Back"], exportCsv: ["导出 CSV", "Export CSV"],
  exportPdf: ["导出 PDF", "Export PDF"], pdfBusy: ["正在生成 PDF…", "Making the PDF…"],
  subject: ["购买主体", "Buyer"], town: ["所属", "Area"], grade: ["信用等级", "Credit grade"],
  notRated: ["未评级", "not rated"], remaining: ["剩余定额", "Remaining quota"],
  method_card: ["刷卡", "card"], method_face: ["刷脸", "face"], "method_card+face": ["刷卡+刷脸", "card + face"],
  method_override: ["店员担保", "clerk override"],
  face: ["刷脸", "Face check"], faceConfirm: ["刷脸核验", "Face check"],
  faceLook: ["请看摄像头…", "Look at the camera…"],
  scanHere: ["扫描标签二维码 / 条码，或输入", "Scan label QR / barcode, or type"],
  add: ["加入", "Add"], search: ["搜索目录", "Search catalogue"], cart: ["购物清单", "Cart"],
  emptyCart: ["还没有商品，请扫码", "No products yet: scan"], checkout: ["核准并结算", "Decide & sell"],
  cancel: ["取消", "Cancel"], newCustomer: ["下一位", "Next customer"], ret: ["包装回收", "Packaging return"],
  deciding: ["正在核准，请稍候…", "Deciding, please wait…"],
  approve: ["准予购买", "Approved"], partial: ["部分准予", "Partly approved"], refuse: ["不予购买", "Refused"],
  offlineSale: ["离线销售", "Offline sale"], record: ["单号", "Record"], sold: ["准售", "sold"],
  refused: ["不准售", "refused"], todo: ["可以：", "You can: "], void: ["作废此单", "Void this sale"],
  voided: ["已作废", "Voided"], receiptPrinting: ["小票打印中…", "Printing receipt…"],
  receiptPrinted: ["小票已打印", "Receipt printed"], receiptFailed: ["小票未打印", "Receipt not printed"],
  reprint: ["重打小票", "Reprint"], returnTitle: ["农药包装回收", "Pesticide packaging return"],
  returnScan: ["扫描回收包装上的标签二维码", "Scan the label QR on each returned container"],
  returnCommit: ["确认回收", "Record return"], deposit: ["押金/补贴", "Deposit/subsidy"],
  linked: ["对应销售", "From sale"], notLinked: ["无对应销售", "no matching sale"],
  returned: ["回收已登记", "Return recorded"], uploaded: ["已上传", "uploaded"], pending: ["待上传", "pending"],
  voice: ["语音", "Voice"], on: ["开", "on"], off: ["关", "off"], packs: ["件", "packs"],
  type_sale: ["销售", "sale"], type_refusal: ["拒售", "refusal"], type_void: ["作废", "void"],
  type_return: ["回收", "return"], type_heartbeat: ["心跳", "heartbeat"], type_event: ["事件", "event"],
  col_seq: ["序号", "No."], col_time: ["时间", "Time"], col_type: ["类型", "Type"], col_subject: ["购买主体", "Buyer"],
  col_items: ["商品", "Items"], col_clerk: ["店员", "Clerk"], col_uploaded: ["上传", "Upload"],
  max: ["最多可售", "at most"], reader: ["读卡器", "Reader"], printer: ["打印机", "Printer"], camera: ["摄像头", "Camera"],
  seconds: ["秒", "s"],
  buyerChanged: ["换了一张卡", "Another card"],
  sameBuyer: ["继续为此人购买", "Keep serving this buyer"],
  scanMore: ["继续扫码：为此人再买", "Scan more for this buyer"],
  changeTo: ["改为", "Change to"],
  status_banned: ["禁用", "banned"], status_restricted: ["限用", "restricted-use"],
  buyerNow: ["当前购买人", "Buyer on screen"], buyerNew: ["新刷卡的购买人", "New card"],
  keepCart: ["购物清单给新购买人", "Cart to the new buyer"],
  currentFirst: ["先为当前购买人结算", "Finish the current sale first"],
  prices: ["价格", "Prices"], priceTitle: ["本店价格（每件）", "Shop prices (per pack)"],
  unpriced: ["未定价", "no price"], total: ["合计", "Total"], depositCharge: ["包装押金（退瓶可退）", "Container deposit (refunded on return)"],
  depositPerPack: ["每件农药包装押金", "Deposit per pesticide container"], save: ["保存", "Save"],
  removePrice: ["清除", "Clear"], col_total: ["金额", "Amount"], priceSaved: ["价格已保存", "Price saved"],
  priceSearch: ["搜索产品名称或登记证号", "Search by product name or registration number"],
  pinRehash: ["有店员的 PIN 为旧格式，无法登录：请店主用 python -m firmware kiosk-pin 重新设置",
    "A clerk's PIN is stored in the old format and cannot sign in: the owner re-sets it with python -m firmware kiosk-pin"],
};
let lang = localStorage.getItem("lang") || "zh";
const L = () => (lang === "en" ? 1 : 0);
const t = (k) => (T[k] ? T[k][L()] : k);
const rz = (o) => (lang === "en" ? o.en : o.zh);
const yuan = (fen) => (fen / 100).toFixed(2) + " 元";

let S = null;          // the last state pushed by the agent
let view = null;       // "ledger" overlays the counter screens
let pin = "";
let search = { q: "", results: [] };
let ledger = null;
let prices = null;      // the 价格 screen's list (owner only)
let pdfBusy = false;   // one PDF export at a time; the button says it is working
let face = { busy: false, outcome: null };   // the face check running, or why the last one failed
let csrf = null;       // this page's session token, sent with every change
let es = null;         // the event stream of this page's session

const $ = (sel) => document.querySelector(sel);
// Icons are inline SVG: the Pi's Chromium has no emoji font (an emoji shows as
// an empty box), and nothing is loaded from the internet.
const SVG = "http://www.w3.org/2000/svg";
function icon(name, size) {
  const shapes = {
    // a card with its chip, over the reader's waves
    card: [["rect", { x: 6, y: 16, width: 52, height: 34, rx: 5, fill: "#2f7d45" }],
      ["rect", { x: 12, y: 24, width: 12, height: 9, rx: 2, fill: "#f3d36b" }],
      ["rect", { x: 12, y: 40, width: 30, height: 4, rx: 2, fill: "#d5f0dc" }],
      ["path", { d: "M46 8 q8 -6 16 0 M49 12 q5 -3 10 0", stroke: "#2f7d45", "stroke-width": 3, fill: "none",
        "stroke-linecap": "round" }]],
  }[name];
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 64 56"); svg.setAttribute("width", size); svg.setAttribute("height", size * 56 / 64);
  svg.setAttribute("aria-hidden", "true"); svg.dataset.icon = name;
  for (const [tag, attrs] of shapes) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  }
  return svg;
}
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") el.addEventListener("click", v);
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "style") el.style.cssText = v;
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

async function api(method, path, body) {
  const headers = {};
  if (body) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin", cache: "no-store" });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const why = data.zh ? rz(data) + (data.retry_after ? ` (${data.retry_after} ${t("seconds")})` : "")
      : (data.detail ? JSON.stringify(data.detail) : res.status);
    toast(why);
    if (data.code === "session_required" || data.code === "csrf_token_invalid") restart();
    throw data;
  }
  return data;
}
function toast(text) {
  const el = $("#toast"); el.textContent = text; el.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => (el.hidden = true), 4000);
}
// China Standard Time whatever the Pi's time zone, as on receipts and the ledger
function hms(ms) { if (!ms) return t("never"); return new Date(ms + 8 * 3600e3).toISOString().slice(11, 19); }

// ---------------------------------------------------------------- status bar
function renderStatus() {
  const st = S.status || {};
  const net = $("#net");
  net.className = "pill " + (st.online ? "online" : "offline");
  net.textContent = st.online ? t("online") : t("offline");
  net.dataset.state = st.online ? "online" : "offline";
  // backlog and last sync are for the signed-in clerk only (not in the public state)
  $("#backlog").textContent = st.backlog === undefined ? "" : `${t("backlog")} ${st.backlog}`;
  $("#backlog").dataset.count = st.backlog ?? "";
  // "never synced" only matters offline: online with nothing acked yet there is nothing to say
  $("#sync").textContent = st.backlog === undefined || (st.online && !st.last_sync_ms) ? ""
    : `${t("lastSync")} ${hms(st.last_sync_ms)}`;
  $("#versions").textContent = `${t("catalogue")} v${st.catalogue ?? "-"} · ${t("params")} v${st.params ?? "-"}`;
  const dev = [["reader", st.reader], ["printer", st.printer], ["camera", st.camera]]
    .filter(([, s]) => s && s !== "none" && !["ok", "streaming", "unknown", "starting"].includes(s))
    .map(([k, s]) => `${t(k)}:${s}`);
  $("#devices").textContent = dev.join(" ");
  $("#clerk").textContent = S.clerk ? S.clerk.name : "";
  $("#voice").textContent = `${t("voice")}:${S.voice ? t("on") : t("off")}`;
  $("#lang").textContent = lang === "en" ? "中文" : "EN";
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
}

// ---------------------------------------------------------------- screens
function signinScreen() {
  const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "ok"].map((k) => {
    if (k === "clear") return h("button", { testid: "pin-clear", onclick: () => { pin = ""; render(); } }, t("clear"));
    if (k === "ok") return h("button", { class: "primary", testid: "signin-submit", onclick: signIn }, t("signin"));
    return h("button", { testid: "pin-key-" + k, onclick: () => { if (pin.length < 12) pin += k; render(); } }, k);
  });
  return h("div", { class: "panel center", testid: "screen-signin", style: "width:420px" },
    h("h2", {}, t("signinTitle")), h("div", { class: "pinshow", testid: "pin-display" }, "•".repeat(pin.length)),
    h("div", { class: "keypad" }, keys),
    S.pin_rehash ? h("div", { class: "muted", testid: "pin-rehash" }, t("pinRehash")) : null);
}
// The signed-in session is a new one (new cookie, token and stream). The old
// stream is closed first: its end, announced when the old session is dropped,
// must not start a new session of its own while the sign-in's cookie arrives.
let signingIn = false;
async function signIn() {
  const p = pin; pin = "";
  if (es) { es.close(); es = null; }
  signingIn = true;
  try {
    const out = await api("POST", "/api/signin", { pin: p });
    csrf = out.csrf;
  } catch (e) { render(); } finally { signingIn = false; connect(); }
}

// The buyer looks at the camera; the check takes a moment (a burst of frames
// with the liveness check for restricted products), so the button says so, and
// a refusal stays next to it in plain words (no match, too dark, not live...).
async function faceCheck(productClass) {
  if (face.busy) return;
  face = { busy: true, outcome: null }; render();
  try {
    const out = await api("POST", "/api/face", { product_class: productClass });
    face.outcome = out.identified ? null : out;
  } catch (e) { face.outcome = e && e.code ? e : null; } finally { face.busy = false; render(); }
}
function faceButton(productClass, label, big) {
  return h("div", { class: "col face" + (big ? " big" : ""), testid: "face-box" },
    h("button", { class: "primary face-btn", testid: "face-check", disabled: face.busy, "data-busy": face.busy ? "1" : "0",
      onclick: () => faceCheck(productClass) }, face.busy ? t("faceLook") : t(label)),
    face.outcome ? h("div", { class: "face-outcome", testid: "face-outcome", "data-code": face.outcome.code },
      rz(face.outcome)) : null,
    // while the kiosk keeps trying on live frames: what the farmer should do now
    face.busy && S.message && S.message.retrying ? h("div", { class: "face-outcome face-hint", testid: "face-hint",
      "data-code": S.message.code }, rz(S.message)) : null);
}

function idleScreen() {
  return h("div", { class: "col center", testid: "screen-idle" },
    h("div", { class: "cardicon", testid: "card-icon" }, icon("card", 96)),
    h("div", { class: "invite", testid: "invite" }, t("invite")),
    h("div", { class: "invite-sub" }, t("inviteSub")),
    faceButton("normal", "face", true),
    h("div", { class: "row", style: "justify-content:center;margin-top:12px" },
      h("button", { testid: "open-ledger", onclick: openLedger }, t("ledger")),
      S.clerk && S.clerk.owner ? h("button", { testid: "open-prices", onclick: () => openPrices("") }, t("prices")) : null,
      h("button", { testid: "signout", onclick: () => api("POST", "/api/signout") }, t("signout"))));
}

function subjectPanel() {
  const s = S.subject;
  if (!s) return h("div", { class: "panel", id: "subject" });
  const bars = s.quota.map((q) => h("div", { class: "quota", testid: "quota-" + q.category },
    h("div", { class: "row" }, h("span", { style: "flex:1" }, lang === "en" ? q.en : q.zh),
      h("b", { testid: "quota-remaining-" + q.category }, q.remaining_text), h("span", { class: "muted" }, "/ " + q.allowance_text)),
    h("div", { class: "bar" + (q.pct <= 0 ? " empty" : q.pct < 25 ? " low" : "") }, h("i", { style: `width:${q.pct}%` }))));
  return h("div", { class: "panel col", id: "subject", testid: "subject-panel" },
    h("div", { class: "muted" }, t("subject")),
    h("div", { class: "subject-name", testid: "subject-name" }, s.name),
    h("div", { class: "muted", testid: "subject-id", "data-method": s.method }, `${s.id} · ${t("method_" + s.method)}`),
    h("div", { class: "row place" },
      h("span", { class: "muted", testid: "subject-village" }, `${t("town")}: ${s.village_name || s.village || s.town || "—"}`),
      h("span", { class: "muted" }, t("grade") + ":"),
      h("span", { class: "grade " + (s.grade ? "grade-" + s.grade : "none"), testid: "subject-grade",
        "data-grade": s.grade || "" }, s.grade || t("notRated"))),
    h("div", { class: "muted", style: "margin-top:6px" }, t("remaining")), bars);
}

function scanBox(onEnter, placeholder, testid) {
  const input = h("input", { id: "scan", testid: testid || "scan-input", placeholder, autocomplete: "off",
    inputmode: "text" });
  input.addEventListener("keydown", async (ev) => {
    if (ev.key !== "Enter" || !input.value.trim()) return;
    const text = input.value.trim(); input.value = "";
    try { await onEnter(text); } catch (e) { /* toast shown */ }
  });
  return input;
}

function saleScreen() {
  const cart = S.cart.map((line) => h("div", { class: "line", testid: "cart-line-" + line.index },
    h("span", { class: "name" }, line.name, " ", h("span", { class: "muted" }, line.pack),
      line.status && line.status !== "normal" ? h("span", { class: "tag " + line.status, testid: "status-" + line.index },
        t("status_" + line.status)) : null),
    h("button", { testid: "minus-" + line.index, onclick: () => line.packs > 1 ?
      api("PUT", `/api/cart/${line.index}`, { packs: line.packs - 1 }) : api("DELETE", `/api/cart/${line.index}`) }, "−"),
    h("span", { class: "qty", testid: "qty-" + line.index }, line.packs),
    h("button", { testid: "plus-" + line.index, onclick: () => api("PUT", `/api/cart/${line.index}`, { packs: line.packs + 1 }) }, "+"),
    h("span", { class: "price", testid: "line-price-" + line.index },
      line.line_fen === null ? h("span", { class: "muted" }, t("unpriced")) : yuan(line.line_fen)),
    h("button", { class: "danger", testid: "remove-" + line.index, onclick: () => api("DELETE", `/api/cart/${line.index}`) }, "✕")));
  const results = search.results.map((p) => h("button", { testid: `result-${p.product}-${p.spec}`,
    onclick: () => { search = { q: "", results: [] }; api("POST", "/api/cart", { product: p.product, spec: p.spec, packs: 1 }); } },
    `${p.name} · ${p.pack} `, p.status !== "normal" ? h("span", { class: "tag " + p.status }, t("status_" + p.status)) : null));
  const q = h("input", { id: "search", testid: "search-input", placeholder: t("search"), value: search.q });
  q.addEventListener("input", async () => {
    search.q = q.value;
    const data = await api("GET", "/api/catalogue?q=" + encodeURIComponent(q.value));
    if (search.q === q.value) { search.results = q.value ? data.products : []; render(); }
  });
  return [subjectPanel(), h("div", { class: "col", style: "flex:1", testid: "screen-sale" },
    h("div", { class: "row" }, scanBox((text) => api("POST", "/api/scan", { text }), t("scanHere")), q),
    search.results.length ? h("div", { class: "panel results", testid: "search-results" }, results) : null,
    h("div", { class: "panel", style: "flex:1", testid: "cart" }, h("b", {}, t("cart")),
      cart.length ? cart : h("div", { class: "muted" }, t("emptyCart"))),
    billLines(S.bill, "cart-bill"),
    h("div", { class: "row" },
      h("button", { class: "primary", style: "flex:2", testid: "checkout", disabled: !S.cart.length,
        onclick: () => api("POST", "/api/checkout").catch(() => {}) }, t("checkout")),
      h("button", { style: "flex:1", testid: "start-return", onclick: () => api("POST", "/api/return/start") }, t("ret")),
      h("button", { style: "flex:1", testid: "finish", onclick: () => api("POST", "/api/finish") }, t("cancel"))))];
}

// The deposit on its own line, then the total; nothing when the shop set no prices.
function billLines(bill, testid) {
  if (!bill || (!bill.deposit_fen && bill.lines.every((f) => f === null))) return null;
  return h("div", { class: "panel bill", testid },
    bill.deposit_fen ? h("div", { class: "row", testid: testid + "-deposit" },
      h("span", { style: "flex:1" }, t("depositCharge")), yuan(bill.deposit_fen)) : null,
    h("div", { class: "row total", testid: testid + "-total" }, h("b", { style: "flex:1" }, t("total")),
      h("b", {}, yuan(bill.total_fen)), bill.unpriced ? h("span", { class: "muted" }, ` (${bill.unpriced} ${t("unpriced")})`) : null));
}

// Another card tapped while a cart is open: never a silent swap. The clerk
// says whose cart it is; until then the agent refuses scans and checkout.
function buyerChoice() {
  const now = S.subject || {}, next = S.pending_buyer;
  const who = (label, s, testid) => h("div", { class: "who", testid },
    h("div", { class: "muted" }, t(label)), h("b", {}, s.name || "—"), h("div", { class: "muted" }, s.id));
  return h("div", { class: "overlay ask", testid: "buyer-choice" },
    h("div", { class: "panel col", style: "width:560px;text-align:center" },
      h("h2", { style: "margin:4px 0" }, t("buyerChanged")),
      h("div", { class: "row", style: "justify-content:space-around" },
        who("buyerNow", now, "buyer-current"), h("span", { style: "font-size:30px" }, "→"), who("buyerNew", next, "buyer-new")),
      h("div", { class: "muted", testid: "buyer-question" }, rz(S.message && S.message.code === "buyer_changed" ? S.message
        : { zh: "", en: "" })),
      h("div", { class: "row" },
        h("button", { class: "primary", style: "flex:1", testid: "buyer-keep-cart",
          onclick: () => api("POST", "/api/buyer/keep-cart").catch(() => {}) }, t("keepCart")),
        h("button", { style: "flex:1", testid: "buyer-current-first",
          onclick: () => api("POST", "/api/buyer/current-first").catch(() => {}) }, t("currentFirst")))));
}

function receiptLine() {
  const r = S.receipt;
  if (!r) return null;
  const text = r.state === "printed" ? t("receiptPrinted") : r.state === "failed" ? `${t("receiptFailed")}: ${rz(r)}` : t("receiptPrinting");
  return h("div", { class: "muted", testid: "receipt-state", "data-state": r.state }, text);
}

// The same buyer, item after item: the scanner keeps working on the result
// screen (what it reads starts a new cart for this buyer), and one button
// opens that cart without a second tap of the card.
function scanMore() {
  return scanBox((text) => api("POST", "/api/scan", { text }), t("scanMore"));
}
function sameBuyerButton() {
  return h("button", { class: "primary", style: "flex:2", testid: "next-same-buyer",
    onclick: () => api("POST", "/api/continue").catch(() => {}) }, t("sameBuyer"));
}

function resultScreen() {
  const o = S.outcome;
  if (o.record === "return") {
    return [subjectPanel(), h("div", { class: "col", style: "flex:1", testid: "screen-result" },
      h("div", { class: "banner approve", testid: "decision", "data-decision": "return" }, t("returned")),
      h("div", { testid: "record-id" }, `${t("record")} ${o.record_id}`),
      h("div", { class: "panel", style: "flex:1" }, o.returned.map((r) => h("div", { class: "item" }, r.name, " · ",
        h("span", { testid: "return-link" }, r.link_id ? `${t("linked")} ${r.link_id}` : t("notLinked"))))),
      h("div", { testid: "deposit" }, `${t("deposit")}: ${(o.deposit_fen / 100).toFixed(2)} 元`), receiptLine(),
      scanMore(),
      h("div", { class: "row" }, sameBuyerButton(),
        h("button", { style: "flex:1", testid: "finish", onclick: () => api("POST", "/api/finish") }, t("newCustomer"))))];
  }
  // The face check only where it can change the outcome: a line refused for
  // the face alone (not also for a permit or a designated shop), a buyer not
  // yet checked by face, and a camera to check with.
  const camera = S.status && S.status.camera && S.status.camera !== "none";
  const needFace = camera && S.subject && !S.subject.method.includes("face")
    && o.items.some((it) => it.decision === "refuse" && it.reasons.length
      && it.reasons.every((r) => r.code === "face_required"));
  const items = o.items.map((it, i) => h("div", { class: "item", testid: "item-" + i, "data-decision": it.decision },
    h("div", { class: "row" }, h("b", { style: "flex:1" }, `${it.name} ×${it.packs}`),
      it.line_fen !== null && it.line_fen !== undefined ? h("span", { class: "price", testid: "item-price-" + i }, yuan(it.line_fen)) : null,
      h("span", { class: "tag" }, it.decision === "approve" ? t("sold") : t("refused"))),
    it.reasons.map((r) => h("div", { class: "why", testid: "reason-" + r.code }, rz(r))),
    it.action ? h("div", { class: "todo", testid: "action-" + i }, t("todo") + (lang === "en" ? it.action_en : it.action_zh),
      it.max_packs ? ` (${t("max")} ${it.max_packs} ${t("packs")})` : "") : null,
    // refused for the quantity: one tap to the packs that still fit
    it.decision === "refuse" && it.max_packs >= 1 ? h("button", { class: "primary small-primary", testid: "use-max-" + i,
      onclick: () => api("POST", `/api/allowed/${i}`).catch(() => {}) },
      `${t("changeTo")} ${it.max_packs} ${t("packs")}`) : null));
  return [subjectPanel(), h("div", { class: "col", style: "flex:1", testid: "screen-result" },
    h("div", { class: "banner " + o.decision, testid: "decision", "data-decision": o.decision, "data-mode": o.mode },
      o.voided ? t("voided") : t(o.decision),
      o.approved && o.mode === "offline" ? h("span", { class: "offline-mark", testid: "offline-mark" }, t("offlineSale")) : null),
    h("div", { testid: "record-id" }, `${t("record")} ${o.record_id}`),
    h("div", { class: "panel", style: "flex:1" }, items), billLines(o.bill, "result-bill"), receiptLine(),
    needFace ? faceButton("restricted", "faceConfirm", false) : null,
    scanMore(),
    h("div", { class: "row" }, sameBuyerButton(),
      h("button", { style: "flex:1", testid: "finish", onclick: () => api("POST", "/api/finish") }, t("newCustomer")),
      o.approved && !o.voided ? h("button", { class: "danger", testid: "void", onclick: () => api("POST", "/api/void", { reason: "clerk_void" }) }, t("void")) : null,
      S.receipt ? h("button", { testid: "reprint", onclick: () => api("POST", "/api/reprint") }, t("reprint")) : null))];
}

function returnScreen() {
  const rows = S.returned.map((r, i) => h("div", { class: "line", testid: "returned-" + i },
    h("span", { class: "name" }, r.name, h("div", { class: "muted" }, r.code)),
    h("span", { testid: "returned-link-" + i }, r.link_id ? `${t("linked")} ${r.link_id}` : t("notLinked")),
    h("b", {}, (r.deposit_fen / 100).toFixed(2) + " 元")));
  return [subjectPanel(), h("div", { class: "col", style: "flex:1", testid: "screen-return" },
    h("h3", { style: "margin:4px 0" }, t("returnTitle")),
    scanBox((text) => api("POST", "/api/return/scan", { text }), t("returnScan"), "return-input"),
    h("div", { class: "panel", style: "flex:1" }, rows),
    h("div", { testid: "return-deposit" }, `${t("deposit")}: ${(S.return_deposit_fen / 100).toFixed(2)} 元`),
    h("div", { class: "row" },
      h("button", { class: "primary", style: "flex:2", testid: "return-commit", disabled: !S.returned.length,
        onclick: () => api("POST", "/api/return/commit") }, t("returnCommit")),
      h("button", { style: "flex:1", testid: "return-cancel", onclick: () => api("POST", "/api/return/cancel") }, t("cancel"))))];
}

async function openLedger() { view = "ledger"; ledger = await api("GET", "/api/ledger?limit=50"); render(); }
// Fetched rather than a plain link: a big ledger takes a while on a Pi (the
// button says so meanwhile), and a refusal (no Chinese font installed) shows
// as a message instead of a failed download.
async function exportPdf() {
  if (pdfBusy) return;
  pdfBusy = true; render();
  try {
    const res = await fetch("/api/ledger.pdf");
    if (!res.ok) { const data = await res.json().catch(() => ({})); toast(data.zh ? rz(data) : res.status); return; }
    const name = (/filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "") || [])[1] || "ledger.pdf";
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) { toast(String(e)); } finally { pdfBusy = false; render(); }
}
// Only the newest request's answer is shown: a reload after a save can
// answer after the owner has already searched for something else.
async function openPrices(q) {
  view = "prices";
  const asked = (openPrices.asked = (openPrices.asked || 0) + 1);
  const data = await api("GET", "/api/prices?q=" + encodeURIComponent(q));
  if (asked !== openPrices.asked) return;
  prices = Object.assign(data, { q });
  render();
}
// The input is looked up by id after the answer: a state push may have drawn
// the screen again meanwhile, and the old element is gone from the page.
const showFen = (id, fen) => { const el = document.getElementById(id); if (el) el.value = fen === null ? "" : (fen / 100).toFixed(2); };
async function savePrice(p, id) {
  try {
    const typed = document.getElementById(id).value.trim();
    const saved = await api("PUT", "/api/prices", { product: p.product, spec: p.spec, yuan: typed || null });
    showFen(id, saved.fen);        // what is stored, as the list shows it
    toast(t("priceSaved"));
    await openPrices(prices.q);
  } catch (e) { /* api() showed the reason */ }
}
// The owner's price list: one row a pack, typed in yuan; the deposit the
// shop charges on each pesticide container sits above the list.
function pricesScreen() {
  const rows = (prices ? prices.products : []).map((p) => {
    const id = `price-${p.product}-${p.spec}`;
    const input = h("input", { id, testid: id, inputmode: "decimal", class: "price-input",
      value: p.fen === null ? "" : (p.fen / 100).toFixed(2), placeholder: t("unpriced") });
    input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") savePrice(p, id); });
    return h("tr", {}, h("td", {}, p.name, " ", h("span", { class: "muted", title: p.product }, p.pack),
      p.status !== "normal" ? h("span", { class: "tag " + p.status }, t("status_" + p.status)) : null),
      h("td", {}, input), h("td", {}, h("button", { testid: "save-" + id, onclick: () => savePrice(p, id) }, t("save"))));
  });
  const deposit = h("input", { id: "deposit", testid: "deposit-input", inputmode: "decimal", class: "price-input",
    value: prices ? (prices.deposit_fen / 100).toFixed(2) : "" });
  const q = h("input", { id: "price-search", testid: "price-search", placeholder: t("priceSearch"), value: prices ? prices.q : "" });
  q.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openPrices(q.value); });
  return h("div", { class: "col", style: "flex:1", testid: "screen-prices" },
    h("div", { class: "row" }, h("h3", { style: "flex:1;margin:4px 0" }, t("priceTitle")),
      h("button", { testid: "close-prices", onclick: () => { view = null; render(); } }, t("back"))),
    h("div", { class: "row" }, h("span", {}, t("depositPerPack")), deposit,
      h("button", { testid: "save-deposit", onclick: async () => {
        try {
          const saved = await api("PUT", "/api/prices/deposit", { yuan: document.getElementById("deposit").value.trim() });
          showFen("deposit", saved.fen);
          toast(t("priceSaved")); await openPrices(prices.q);
        }
        catch (e) { /* shown */ } } }, t("save"))),
    q, h("div", { class: "panel", style: "flex:1" }, h("table", {}, h("tbody", {}, rows))));
}

function ledgerScreen() {
  const rows = (ledger ? ledger.rows : []).map((r) => h("tr", { testid: "ledger-row-" + r.seq },
    h("td", {}, r.seq), h("td", {}, r.time.slice(5)), h("td", {}, t("type_" + r.type),
      r.mode === "offline" ? h("span", { class: "offline-mark", style: "font-size:12px" }, t("offline")) : null),
    h("td", {}, r.subject || ""), h("td", {}, r.items.join("；"), r.links.length ? ` → #${r.links.join(",#")}` : "",
      r.voids ? ` #${r.voids}` : ""),
    h("td", { testid: "ledger-total-" + r.seq, class: "num" }, r.total_fen !== null && r.total_fen !== undefined ? yuan(r.total_fen) : ""),
    h("td", { testid: "ledger-clerk-" + r.seq }, r.clerk_name || r.clerk || ""),
    h("td", {}, r.uploaded ? t("uploaded") : t("pending"))));
  const head = h("thead", {}, h("tr", { testid: "ledger-head" },
    ["seq", "time", "type", "subject", "items", "total", "clerk", "uploaded"].map((k) => h("th", {}, t("col_" + k)))));
  return h("div", { class: "col", style: "flex:1", testid: "screen-ledger" },
    h("div", { class: "row" }, h("h3", { style: "flex:1;margin:4px 0" }, t("ledger")),
      h("a", { href: "/api/ledger.csv", download: "ledger.csv", testid: "export-csv" }, h("button", {}, t("exportCsv"))),
      h("button", { testid: "export-pdf", disabled: pdfBusy, onclick: exportPdf }, pdfBusy ? t("pdfBusy") : t("exportPdf")),
      h("button", { testid: "close-ledger", onclick: () => { view = null; render(); } }, t("back"))),
    h("div", { class: "panel", style: "flex:1" }, h("table", {}, head, h("tbody", {}, rows))));
}

// ---------------------------------------------------------------- render
function render() {
  if (!S) return;
  renderStatus();
  // A push redraws the screen while someone may be typing: the focused field
  // keeps its text, its caret and its selection (a half-typed search stays as it was).
  const activeEl = document.activeElement;
  const active = activeEl && activeEl.id;
  const caret = activeEl && activeEl.tagName === "INPUT" ? [activeEl.selectionStart, activeEl.selectionEnd] : null;
  const values = {};
  document.querySelectorAll("main input[id]").forEach((el) => (values[el.id] = el.value));
  const main = $("#main");
  main.replaceChildren();
  let screen = S.screen;
  if (view && S.clerk && screen !== "deciding") screen = view;   // the ledger and the prices overlay the counter
  if (screen !== render.lastScreen) face.outcome = null;   // a refusal belongs to the screen it was asked on
  const parts = { signin: signinScreen, idle: idleScreen, sale: saleScreen, deciding: saleScreen,
    result: resultScreen, return: returnScreen, ledger: ledgerScreen, prices: pricesScreen }[screen]();
  main.append(...[parts].flat().filter(Boolean));
  if (S.screen === "deciding") main.append(h("div", { class: "overlay", testid: "deciding" }, t("deciding")));
  else if (S.pending_buyer && screen === "sale") main.append(buyerChoice());
  document.querySelectorAll("main input[id]").forEach((el) => { if (values[el.id] !== undefined) el.value = values[el.id]; });
  const focus = document.getElementById(active) || document.getElementById("scan");
  if (focus && focus.tagName === "INPUT") {
    focus.focus();
    if (caret && focus.id === active && caret[0] !== null) focus.setSelectionRange(caret[0], caret[1]);
  }
  if (screen !== render.lastScreen) { render.lastScreen = screen; $("#toast").hidden = true; }
  const msg = S.message;
  if (msg && msg.code && msg !== render.lastMsg) {
    render.lastMsg = msg;
    // a face check's outcome is shown next to its button, not twice
    // and the question about another card is asked in its own box
    if (!face.busy && !(face.outcome && face.outcome.code === msg.code) && msg.code !== "buyer_changed") toast(rz(msg));
  }
  main.dataset.screen = screen;
}

function connect() {
  if (es) es.close();
  const stream = new EventSource("/api/events");
  es = stream;
  stream.onmessage = (ev) => {
    const next = JSON.parse(ev.data);
    if (S && next.boot === S.boot && next.version < S.version) return;
    S = next;
    if (S.screen === "signin") view = null;
    render();
  };
  // the session ended (a sign-in elsewhere on this page made a new one, or it expired)
  stream.addEventListener("end", () => { if (es === stream) restart(); });
  stream.onerror = () => {
    if (es !== stream) return;
    const net = $("#net"); if (net) { net.className = "pill offline"; net.textContent = "—"; }
    // refused (the agent restarted and no longer knows this session): a new session;
    // otherwise (the agent away) EventSource tries again by itself
    if (stream.readyState === EventSource.CLOSED) restart();
  };
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
async function startSession() {
  const res = await fetch("/api/session", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new Error("session " + res.status);
  csrf = (await res.json()).csrf;
}
let restarting = false;
async function restart() {
  if (restarting || signingIn) return;
  restarting = true;
  if (es) { es.close(); es = null; }
  for (let wait = 500; ; wait = Math.min(wait * 2, 5000)) {
    try { await startSession(); break; } catch (e) { await sleep(wait); }
  }
  restarting = false;
  connect();
}

$("#lang").addEventListener("click", () => { lang = lang === "en" ? "zh" : "en"; localStorage.setItem("lang", lang); render(); });
$("#voice").addEventListener("click", () => api("POST", "/api/voice", { on: !(S && S.voice) }).catch(() => {}));
restart();
