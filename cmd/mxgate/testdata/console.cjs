// Drives the mxgate console in Debian's chromium through playwright-core.
// Run by TestConsoleInBrowser (console_browser_test.go), which passes:
//   ADMIN      admin base URL (the console is ADMIN/mxgate/ui)
//   SITE       the gateway's public base URL
//   CHROMIUM   the browser binary
//   PROFILE    a fresh user data dir
//   CLASSES    every class name, comma-separated
//   BUSY       classes the test keeps busy, comma-separated
//   SCREENSHOT where to save the screenshot
//   SCREENSHOT_WAIT_MS how long the charts fill first (default 4.5s)
// It prints one line per step and exits non-zero on the first failure.
"use strict";
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const ADMIN = env("ADMIN"), SITE = env("SITE");
const REASON = "console test: search is hurting the database";
const step = (msg) => console.log("step: " + msg);

async function search() {
  const resp = await fetch(SITE + "/_matrix/client/v3/search", {
    method: "POST", body: "{}",
    headers: { "Content-Type": "application/json", Authorization: "Bearer syt_console_test" },
  });
  return { status: resp.status, body: await resp.text() };
}

async function main() {
  const ctx = await chromium.launchPersistentContext(env("PROFILE"), {
    executablePath: env("CHROMIUM"),
    headless: true,
    chromiumSandbox: false,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 1000 },
    timeout: 30000,
  });
  ctx.setDefaultTimeout(20000);
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    const problems = [];
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    // (A refused POST is logged as "Failed to load resource": expected below.)
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push("console error: " + m.text());
    });
    page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));
    // Nothing but the admin address: no CDN, no external font.
    page.on("request", (r) => { if (!r.url().startsWith(ADMIN)) problems.push("external request: " + r.url()); });

    // A typed address: no Referer, as an operator opens it.
    const resp = await page.goto(ADMIN + "/mxgate/ui");
    if (resp.status() !== 200) throw new Error(`GET /mxgate/ui: ${resp.status()} ${await resp.text()}`);
    step("console loaded");

    for (const c of env("CLASSES").split(",")) {
      await page.locator(`[data-class="${c}"] [data-field="inflight"]`).filter({ hasText: /\d/ }).waitFor();
    }
    step("every class is shown");
    for (const c of env("BUSY").split(",")) {
      await page.waitForFunction((c) => {
        const v = document.querySelector(`[data-class="${c}"] [data-field="admitted"]`);
        return v && parseFloat(v.textContent) > 0;
      }, c);
    }
    step("busy classes show live admitted rates");

    // The same validation as the API: a nonsense duration is refused.
    await page.locator('[data-class="search"] button', { hasText: "Shed…" }).click();
    await page.keyboard.type("forever");
    await page.keyboard.press("Enter");
    await page.locator("#result.error").filter({ hasText: '"for" must be a positive duration' }).waitFor();
    step("a bad duration is refused with the API's message");

    // Shed search for 2 minutes, by keyboard from the card's button.
    await page.locator('[data-class="search"] button', { hasText: "Shed…" }).focus();
    await page.keyboard.press("Enter"); // focus moves to "For", its text selected
    await page.keyboard.type("2m");
    await page.keyboard.press("Tab"); // Reason
    await page.keyboard.type(REASON);
    await page.keyboard.press("Enter"); // submits the form
    await page.locator("#result.done").filter({ hasText: "search: shed for 2m0s" }).waitFor();
    const row = page.locator("table tr", { hasText: REASON });
    await row.waitFor();
    if (!(await row.textContent()).includes("search")) throw new Error("toggle row does not name search");
    await page.locator('[data-class="search"] .badge', { hasText: "shed" }).waitFor();
    step("toggle shown with its reason");
    const shed = await search();
    if (shed.status !== 429 || !shed.body.includes("M_LIMIT_EXCEEDED") || !shed.body.includes(REASON)) {
      throw new Error(`search while shed: ${shed.status} ${shed.body}`);
    }
    step("search answers 429 with the reason");

    // Let the charts fill, then take the README's picture.
    await page.waitForTimeout(Number(process.env.SCREENSHOT_WAIT_MS || 4500));
    await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
    step("screenshot saved");

    await row.getByRole("button", { name: /restore/i }).click();
    await page.locator("#result.done").filter({ hasText: "search restored" }).waitFor();
    await page.getByText("No toggle is in force.").waitFor();
    await page.locator('[data-class="search"] .badge', { hasText: "normal" }).waitFor();
    const after = await search();
    if (after.status !== 200) throw new Error(`search after restore: ${after.status} ${after.body}`);
    step("restore ends the toggle; search answers 200");

    // Readable in a narrow window: nothing wider than the viewport.
    await page.setViewportSize({ width: 360, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`narrow window scrolls sideways by ${overflow}px`);
    step("narrow window fits");

    // Fleet members, when the status has any: the real status with a
    // fleet section added, the shape the fleet code reports.
    await page.route("**/mxgate/status", async (route) => {
      const resp = await route.fetch();
      const body = await resp.json();
      body.fleet = { redis_up: true, instances: 2,
                     members: [{ name: "gw-a", last_seen: "1s ago" }, { name: "gw-b", last_seen: "2s ago" }] };
      await route.fulfill({ response: resp, json: body });
    });
    await page.locator("table tr", { hasText: "gw-b" }).waitFor();
    await page.getByText("instances").waitFor();
    await page.unroute("**/mxgate/status");
    step("fleet members shown when the status has them");

    if (problems.length) throw new Error(problems.join("\n"));
    step("done");
  } finally {
    await ctx.close();
  }
}

main().catch((e) => {
  console.error("FAIL: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
