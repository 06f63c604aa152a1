// The dashboard as a person uses it: the embedded shop binary on a free
// loopback port with a fresh data folder, its page at `/` in headless
// Chromium (Debian's), an order placed by typing and clicking, and the order
// followed from command to events (the live stream) to view.
//
// Run by scripts/browser/test (which builds the shop and installs Chromium
// and playwright-core): SHOP_BIN is the shop binary, CHROMIUM the browser.
// BROWSER_SCREENSHOT=path.png keeps a picture of the page at the end.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const SHOP_BIN = process.env.SHOP_BIN ?? "target/debug/shop";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const STARTUP_MS = 30_000;
const STEP_MS = 20_000;

let shop; // { child, base, dir }
let browser;

/** Starts the shop on port 0; its one stdout line says where it listens. */
function startShop() {
  const dir = mkdtempSync(join(tmpdir(), "shop-browser-"));
  const child = spawn(SHOP_BIN, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${SHOP_BIN} did not start in ${STARTUP_MS} ms`)), STARTUP_MS);
    let out = "";
    child.on("error", (error) => reject(new Error(`cannot start ${SHOP_BIN}: ${error.message}`)));
    child.on("exit", (code) => reject(new Error(`${SHOP_BIN} exited with ${code} before listening`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const found = out.match(/listening on (http:\/\/\S+)/);
      if (found) {
        clearTimeout(timer);
        resolve({ child, base: found[1], dir });
      }
    });
  });
}

/** Stops the shop by its pid: SIGTERM, then SIGKILL if it lingers. */
async function stopShop({ child, dir }) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid, "SIGTERM");
    const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid, "SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dir, { recursive: true, force: true });
}

// Even on an abrupt exit, leave no shop behind.
process.on("exit", () => {
  if (shop && shop.child.exitCode === null) process.kill(shop.child.pid, "SIGKILL");
});

before(async () => {
  shop = await startShop();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container: Chromium's sandbox needs namespaces it may not get.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  if (shop) await stopShop(shop);
});

test("an order placed on the dashboard goes from command to event to view", async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => message.type() === "error" && pageErrors.push(message.text()));

  await page.goto(`${shop.base}/`);
  await page.locator("#stream-state", { hasText: "live" }).waitFor();

  // 1. Register a product.
  await page.fill("#new-sku", "KB-1");
  await page.fill("#new-name", "Keyboard");
  await page.fill("#new-price", "4999");
  await page.fill("#new-stock", "10");
  await page.click("#register");
  await page.locator("#message", { hasText: "registered KB-1" }).waitFor();

  // 2. Pick it and put two in a cart.
  await page.selectOption("#product", "KB-1");
  await page.fill("#quantity", "2");
  await page.click("#add-to-cart");
  await page.locator("#cart-lines li", { hasText: "2 × Keyboard" }).waitFor();

  // 3. Check out.
  await page.fill("#customer-id", "alice");
  await page.click("#checkout");

  // ① The command's answer: an order id and a token.
  const orderId = (await page.locator("#order-id").textContent()).trim();
  assert.match(orderId, /^[0-9a-f-]{36}$/);
  assert.match(await page.locator("#order-token").textContent(), /^p2\.\d+\.\d+$/);

  // ③ The view, read with each event's token, reaches confirmed (placed before).
  await page.locator("#order-status", { hasText: "confirmed" }).waitFor();
  assert.match(await page.locator("#order-view").textContent(), /2 × Keyboard @ 49\.99/);

  // ② The events, in the live stream and in the order's journey.
  const expected = ["product.registered", "cart.item_added", "cart.checked_out", "order.placed", "order.confirmed"];
  for (const type of expected) {
    await page.locator(`#events tr[data-type="${type}"]`).first().waitFor();
  }
  const journeyTypes = await page.locator("#journey-events li").evaluateAll((items) => items.map((li) => li.dataset.type));
  for (const type of ["cart.checked_out", "order.placed", "order.confirmed"]) {
    assert.ok(journeyTypes.includes(type), `journey lacks ${type}: ${journeyTypes}`);
  }
  const positions = await page.locator("#events tr").evaluateAll((rows) => rows.map((tr) => Number(tr.dataset.position)));
  assert.deepEqual(positions, [...positions].sort((a, b) => b - a), "the stream shows newest first, in position order");
  assert.equal(new Set(positions).size, positions.length, "no event shown twice");
  const placed = await page.locator('#events tr[data-type="order.placed"]').first().getAttribute("data-stream");
  assert.equal(placed, `order-${orderId}`);

  // The lag chart draws a line per projection, and every lag comes back to 0.
  const projections = await page.evaluate(async () => (await (await fetch("/api/admin/projections")).json()).projections.length);
  assert.ok(projections > 0);
  await page.waitForFunction(
    (count) => document.querySelectorAll("#lag-chart polyline").length === count &&
      [...document.querySelectorAll("#lag-chart polyline")].every((line) => line.getAttribute("points").split(" ").length >= 2),
    projections,
  );
  await page.waitForFunction(
    (count) => {
      const lags = [...document.querySelectorAll("#lag-legend li b")].map((b) => b.textContent);
      return lags.length === count && lags.every((lag) => lag === "0");
    },
    projections,
  );

  // No dead letters, no errors on the page.
  assert.equal((await page.locator("#dlq-count").textContent()).trim(), "0");
  assert.deepEqual(pageErrors, []);

  if (process.env.BROWSER_SCREENSHOT) await page.screenshot({ path: process.env.BROWSER_SCREENSHOT, fullPage: true });
  await page.close();
});
