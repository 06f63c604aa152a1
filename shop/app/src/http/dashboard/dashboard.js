// The shop's live dashboard: the event stream, each projection's lag, the
// dead-letter count, and a checkout followed from command to event to view.
// Plain browser JavaScript, public API only; no build step, no dependencies.
"use strict";

const BACKLOG = 30; // events before the head shown when the page opens
const MAX_ROWS = 200; // rows the stream table keeps
const POLL_MS = 1000; // how often lag and dead letters are sampled
const WINDOW_MS = 120_000; // the lag chart's time span
const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563"];

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (text or nodes); never parses HTML. */
function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "polyline", "line", "circle", "text"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

const money = (cents) => (cents / 100).toFixed(2);
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false }) + "." + iso.slice(20, 23);
const randomId = (prefix) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * The API key, when the shop asks for one: open the page as `/#api_key=<key>`
 * (a fragment never reaches the server); it is kept for this tab only.
 */
const apiKey = (() => {
  const match = location.hash.match(/(?:^#|&)api_key=([^&]*)/);
  if (match) {
    sessionStorage.setItem("shop.api_key", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("shop.api_key");
})();

/** Calls the API; answers `{status, body}` or throws with the problem's detail. */
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (apiKey) {
    init.headers.authorization = `Bearer ${apiKey}`;
  }
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  if (!response.ok) {
    const detail = (json && (json.detail || json.title)) || response.statusText;
    throw new Error(`${method} ${path.split("?")[0]}: ${response.status} ${detail}`);
  }
  return { status: response.status, body: json };
}

function say(text, bad = false) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("bad", bad);
}

/** Runs a form's action with its button disabled; reports errors on the page. */
function onSubmit(form, action) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter || $(form).querySelector("button");
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      say(error.message, true);
    } finally {
      button.disabled = false;
      refreshCheckoutButton();
    }
  });
}

// ── The live stream ──────────────────────────────────────────────────────

const seen = { count: 0, head: 0, recent: [] };

function connectStream(after) {
  // EventSource reconnects by itself and resumes with Last-Event-ID.
  // EventSource cannot send headers: the stream also takes the key in its query.
  const key = apiKey ? `&api_key=${encodeURIComponent(apiKey)}` : "";
  const source = new EventSource(`/api/events/stream?after=${after}${key}`);
  source.onopen = () => setStreamState("live");
  source.onerror = () => setStreamState("reconnecting");
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
}

function setStreamState(state) {
  $("stream-state").textContent = state;
  $("stream-state").className = state === "live" ? "good" : "warn";
}

function onEvent(event) {
  seen.count += 1;
  seen.head = Math.max(seen.head, event.position);
  seen.recent.push(event);
  if (seen.recent.length > MAX_ROWS) seen.recent.shift();
  $("seen").textContent = seen.count;
  $("head").textContent = seen.head;

  const payload = JSON.stringify(event.payload);
  const row = el(
    "tr",
    { "data-position": event.position, "data-type": event.event_type, "data-stream": event.stream_id },
    el("td", { class: "num" }, String(event.position)),
    el("td", { class: "num" }, clock(event.recorded_at)),
    el("td", { title: event.stream_id }, `${event.stream_id} v${event.stream_version}`),
    el("td", { class: `type ${event.event_type.split(".")[0]}` }, event.event_type),
    el("td", { class: "payload", title: payload }, payload.length > 96 ? payload.slice(0, 95) + "…" : payload),
  );
  if (journey.owns(event)) row.classList.add("mine");
  const rows = $("events");
  rows.prepend(row);
  while (rows.childElementCount > MAX_ROWS) rows.lastElementChild.remove();
  journey.onEvent(event, row);
}

// ── Lag and dead letters ─────────────────────────────────────────────────

const samples = []; // {t, lags: {projection: lag}}

async function poll() {
  try {
    const { body } = await api("GET", "/api/admin/projections");
    const lags = {};
    let dead = 0;
    for (const projection of body.projections) {
      lags[projection.name] = projection.lag ?? 0;
      dead += projection.dead_letters;
    }
    if (body.head != null) $("head").textContent = Math.max(body.head, seen.head);
    $("dlq-count").textContent = dead;
    $("dlq-count").className = dead > 0 ? "bad" : "good";
    const now = Date.now();
    samples.push({ t: now, lags });
    while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
    drawLag();
  } catch (error) {
    $("dlq-count").textContent = "?";
    console.warn("poll /api/admin/projections", error);
  }
}

function drawLag() {
  const chart = $("lag-chart");
  const [width, height, pad] = [600, 180, 4];
  const names = samples.length ? Object.keys(samples[samples.length - 1].lags) : [];
  const top = Math.max(10, ...samples.flatMap((s) => Object.values(s.lags)));
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const x = (t) => width - ((now - t) / WINDOW_MS) * width;
  const y = (lag) => height - pad - (lag / top) * (height - 2 * pad);

  chart.replaceChildren(
    el("line", { x1: 0, y1: y(0), x2: width, y2: y(0), class: "axis" }),
    el("text", { x: 4, y: 14, class: "scale" }, `${top}`),
  );
  const legend = $("lag-legend");
  legend.replaceChildren();
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    const points = samples.filter((s) => name in s.lags).map((s) => `${x(s.t).toFixed(1)},${y(s.lags[name]).toFixed(1)}`);
    const last = samples[samples.length - 1].lags[name];
    chart.append(
      el("polyline", { points: points.join(" "), stroke: color, "data-projection": name }),
      el("circle", { cx: x(now), cy: y(last), r: 3, fill: color }),
    );
    legend.append(
      el("li", { "data-projection": name }, el("span", { class: "swatch", style: `background:${color}` }), `${name} `, el("b", {}, String(last))),
    );
  });
}

// ── The shop: register, pick, add, check out ─────────────────────────────

async function loadProducts(token, select) {
  const query = token ? `?consistent_with=${encodeURIComponent(token)}` : "";
  const { body } = await api("GET", `/api/products${query}`);
  const picker = $("product");
  const keep = select || picker.value;
  picker.replaceChildren(
    ...body.products.map((p) =>
      el("option", { value: p.sku }, `${p.name} (${p.sku}), ${money(p.price_cents)}, ${p.stock} in stock`),
    ),
  );
  if (keep && body.products.some((p) => p.sku === keep)) picker.value = keep;
}

function renderCart(cart) {
  const lines = cart.items.map((item) =>
    el("li", {}, `${item.quantity} × ${item.name} (${item.sku}) = ${money(item.line_total_cents)}`),
  );
  $("cart").replaceChildren(
    el("p", { class: "hint" }, `cart ${cart.cart_id}, ${cart.status}, total ${money(cart.total_cents)}`),
    el("ul", { id: "cart-lines" }, ...lines),
  );
  $("cart").dataset.items = cart.items.length;
}

function refreshCheckoutButton() {
  $("checkout").disabled = !(Number($("cart").dataset.items) > 0);
}

function newCart() {
  $("cart-id").value = randomId("cart");
  $("cart").replaceChildren();
  $("cart").dataset.items = 0;
  refreshCheckoutButton();
}

onSubmit("register-form", async () => {
  const sku = $("new-sku").value.trim();
  const { body } = await api("POST", "/api/products", {
    sku,
    name: $("new-name").value.trim(),
    price_cents: Number($("new-price").value),
    stock: Number($("new-stock").value),
  });
  await loadProducts(body.token, sku);
  say(`registered ${sku} (token ${body.token})`);
  $("new-sku").value = randomId("SKU");
});

onSubmit("cart-form", async () => {
  const cartId = $("cart-id").value.trim();
  const sku = $("product").value;
  if (!sku) throw new Error("register a product first");
  const { body } = await api("POST", `/api/carts/${encodeURIComponent(cartId)}/items`, {
    sku,
    quantity: Number($("quantity").value),
  });
  const cart = await api("GET", `/api/carts/${encodeURIComponent(cartId)}?consistent_with=${body.token}`);
  renderCart(cart.body);
  say(`added ${sku} to ${cartId} (token ${body.token})`);
});

onSubmit("checkout-form", async () => {
  const cartId = $("cart-id").value.trim();
  const path = `/api/carts/${encodeURIComponent(cartId)}/checkout`;
  const answer = await api("POST", path, { customer_id: $("customer-id").value.trim() });
  journey.start(cartId, path, answer);
  say(`checked out ${cartId}: order ${answer.body.order_id}`);
  newCart();
  await journey.query(answer.body.token);
});

// ── One order's journey: command → events → view ─────────────────────────

const journey = {
  orderId: null,
  cartId: null,
  correlation: null,
  version: -1, // newest order view shown (pending has version 0)

  start(cartId, path, answer) {
    Object.assign(this, { orderId: answer.body.order_id, cartId, correlation: null, version: -1 });
    $("journey").hidden = false;
    $("journey-command").replaceChildren(
      el("code", {}, `POST ${path} → ${answer.status}`),
      el("dl", {}, el("dt", {}, "order"), el("dd", { id: "order-id" }, answer.body.order_id),
        el("dt", {}, "token"), el("dd", { id: "order-token" }, answer.body.token)),
    );
    $("journey-events").replaceChildren();
    $("journey-queries").replaceChildren();
    $("order-view").replaceChildren();
    $("order-status").textContent = "–";
    // The stream may have shown the first events before the answer came.
    for (const event of seen.recent) this.onEvent(event, $("events").querySelector(`tr[data-position="${event.position}"]`));
  },

  owns(event) {
    if (!this.orderId) return false;
    if (this.correlation && event.correlation_id === this.correlation) return true;
    return event.stream_id === `order-${this.orderId}` || event.payload?.order_id === this.orderId;
  },

  onEvent(event, row) {
    if (!this.owns(event) || $("journey-events").querySelector(`[data-position="${event.position}"]`)) return;
    this.correlation ||= event.correlation_id;
    row?.classList.add("mine");
    $("journey-events").append(
      el("li", { "data-position": event.position, "data-type": event.event_type },
        el("span", { class: "num" }, `#${event.position}`), ` ${event.event_type} `, el("small", {}, event.stream_id)),
    );
    if (event.stream_id === `order-${this.orderId}`) this.query(event.token).catch((error) => say(error.message, true));
  },

  /** Reads the order view once it has absorbed `token`. */
  async query(token) {
    const orderId = this.orderId;
    const path = `/api/orders/${orderId}?consistent_with=${encodeURIComponent(token)}&wait_ms=5000`;
    const { status, body } = await api("GET", path);
    if (orderId !== this.orderId) return;
    $("journey-queries").append(el("li", {}, el("code", {}, `GET …?consistent_with=${token} → ${status} ${body.status}`)));
    if (body.version < this.version) return; // an older answer overtaken by a newer one
    this.version = body.version;
    $("order-status").textContent = body.status;
    $("order-status").className = `status ${body.status}`;
    $("order-view").replaceChildren(
      el("p", { class: "hint" }, `${body.customer_id}, total ${money(body.total_cents)}, version ${body.version}` +
        (body.rejection_reason ? `, ${body.rejection_reason}` : "")),
      el("ul", {}, ...body.lines.map((line) => el("li", {}, `${line.quantity} × ${line.name} @ ${money(line.unit_price_cents)}`))),
    );
  },
};

// ── Start ────────────────────────────────────────────────────────────────

async function main() {
  $("new-sku").value = randomId("SKU");
  newCart();
  let head = 0;
  try {
    head = (await api("GET", "/api/admin/projections")).body.head ?? 0;
  } catch (error) {
    say(error.message, true);
  }
  connectStream(Math.max(0, head - BACKLOG));
  poll();
  setInterval(poll, POLL_MS);
  await loadProducts().catch((error) => say(error.message, true));
}

main();
