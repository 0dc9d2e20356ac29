//! A real browser (Debian's Chromium, driven by playwright-core) on its own
//! origin calls a service over gRPC-web through the gateway, as the
//! frontend does (CORS preflight, bearer token, binary grpc-web framing),
//! and receives a report event over the WebSocket bridge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use axum::response::Html;
use futures::future::BoxFuture;
use support::{Edge, tools_dir};
use treven_gateway::caller::Caller;
use treven_gateway::ws::authorize::ChannelAuthorizer;
use treven_mesh::events::{EventChannel, EventKind, EventPublisher};
use treven_mesh::{OrgId, Role, ServiceError};

/// The reports service is not built yet: this one report exists in this
/// one organisation.
#[derive(Debug)]
struct OneReport(OrgId, EventChannel);

impl ChannelAuthorizer for OneReport {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        channel: EventChannel,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let ok = caller.identity.org_id == self.0 && channel == self.1;
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(ServiceError::not_found("report"))
            }
        })
    }
}

const PAGE: &str = r#"<!doctype html><html><body><pre id="result"></pre><script>
(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  const out = document.getElementById('result');
  try {
    const response = await fetch(params.get('base') + '/treven.tenants.v1.TenantsService/GetMe', {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', 'authorization': 'Bearer ' + params.get('token') },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    let offset = 0, message = '', trailers = '';
    while (offset + 5 <= bytes.length) {
      const flag = bytes[offset];
      const length = new DataView(bytes.buffer, offset + 1, 4).getUint32(0);
      const payload = new TextDecoder().decode(bytes.slice(offset + 5, offset + 5 + length));
      if (flag & 0x80) trailers += payload; else message += payload;
      offset += 5 + length;
    }
    const status = (trailers.match(/grpc-status:\s*(\d+)/) || [])[1] || response.headers.get('grpc-status');
    const grpcWeb = { http: response.status, grpcStatus: status, hasEmail: message.includes(params.get('email')) };
    // WebSocket: subscribe to the report, ask for an update to be
    // published once subscribed, and wait for it to arrive live.
    const event = await new Promise((resolve, reject) => {
      const ws = new WebSocket(params.get('ws'), ['treven.v1', 'bearer.' + params.get('token')]);
      const timer = setTimeout(() => reject(new Error('no event')), 15000);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', channel: params.get('channel') }));
      ws.onmessage = async (m) => {
        const msg = JSON.parse(m.data);
        if (msg.type === 'subscribed') await fetch('/publish');
        else if (msg.type === 'report:update') { clearTimeout(timer); ws.close(); resolve(msg); }
        else if (msg.type === 'error') { clearTimeout(timer); reject(new Error(msg.code)); }
      };
      ws.onerror = () => reject(new Error('websocket error'));
    });
    out.textContent = JSON.stringify({ grpcWeb, event: { type: event.type, channel: event.channel, data: event.data } });
  } catch (error) {
    out.textContent = JSON.stringify({ error: String(error) });
  }
  out.dataset.done = '1';
})();
</script></body></html>"#;

const DRIVER: &str = r#"
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  await page.goto(process.argv[2]);
  await page.waitForSelector('#result[data-done]', { timeout: 20000 });
  console.log(await page.textContent('#result'));
  await browser.close();
})().catch(error => { console.error(error); process.exit(1); });
"#;

#[tokio::test]
async fn chromium_calls_grpc_web_and_receives_websocket_events() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;
    let channel = EventChannel::Report(uuid::Uuid::now_v7());

    // The page's own origin; `/publish` publishes a report update as the
    // reports service will.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let redis =
        std::env::var("TREVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let publisher = EventPublisher::connect_lazy(&redis).unwrap();
    let page = axum::Router::new()
        .route("/", axum::routing::get(|| async { Html(PAGE) }))
        .route(
            "/publish",
            axum::routing::get(move || {
                let publisher = publisher.clone();
                async move {
                    publisher
                        .publish(
                            acme,
                            &channel,
                            EventKind::ReportUpdate,
                            serde_json::json!({"progress": 42}),
                        )
                        .await
                        .unwrap();
                    "ok"
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, page).await });

    let base = edge
        .gateway_with(&[("TREVEN_CORS_ORIGINS", origin.clone())])
        .await;
    let ws = edge
        .ws_instance(&[], Some(std::sync::Arc::new(OneReport(acme, channel))))
        .await;

    let driver = std::env::temp_dir().join(format!("treven-driver-{}.js", uuid::Uuid::new_v4()));
    std::fs::write(&driver, DRIVER).unwrap();
    let url = format!(
        "{origin}/#base={base}&ws={}&channel={channel}&token={token}&email=ann@acme.example",
        ws.url
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&driver)
            .arg(url)
            .env("NODE_PATH", tools_dir().join("node/node_modules"))
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the page's result");
    assert_eq!(
        result,
        serde_json::json!({
            "grpcWeb": {"http": 200, "grpcStatus": "0", "hasEmail": true},
            "event": {"type": "report:update", "channel": channel.to_string(), "data": {"progress": 42}},
        })
    );
    edge.stop().await;
}

/// Drives the `/docs` console: authorize with a bearer token, open
/// `GET /api/me`, execute it, and report what the console shows.
const DOCS_DRIVER: &str = r#"
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const foreign = [];
  page.on('request', request => {
    if (!request.url().startsWith(process.argv[2]) && !request.url().startsWith('data:')) foreign.push(request.url());
  });
  const errors = [];
  page.on('pageerror', error => errors.push(String(error)));
  await page.goto(process.argv[2] + '/docs');
  await page.waitForSelector('.swagger-ui .information-container', { timeout: 20000 });
  // Schemas are shown: the models section lists the messages.
  const models = await page.locator('section.models').count();
  // Authorize with the bearer token.
  await page.click('button.authorize');
  await page.fill('.modal-ux input[type=text], .modal-ux input[type=password]', process.argv[3]);
  await page.click('.modal-ux button.authorize[type=submit], .modal-ux .auth-btn-wrapper button.authorize');
  await page.click('.modal-ux button.btn-done, .modal-ux .close-modal');
  // Open GET /api/me and run it.
  const op = page.locator('#operations-TenantsService-TenantsService_GetMe');
  await op.locator('.opblock-summary').first().click();
  const tryOut = op.locator('button.try-out__btn');
  if (await tryOut.count() && (await tryOut.textContent()).includes('Try it out')) await tryOut.click();
  await op.locator('button.execute').click();
  const status = op.locator('.live-responses-table tbody .response-col_status').first();
  await status.waitFor({ timeout: 20000 });
  const body = await op.locator('.live-responses-table .response-col_description pre').first().textContent();
  console.log(JSON.stringify({
    models: models > 0,
    status: (await status.textContent()).trim(),
    hasEmail: body.includes(process.argv[4]),
    foreign,
    errors,
  }));
  await browser.close();
})().catch(error => { console.error(error); process.exit(1); });
"#;

#[tokio::test]
async fn chromium_calls_get_me_through_the_docs_console_with_a_bearer_token() {
    let edge = Edge::start(10_000).await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("dora@acme.example", acme, Some(Role::Analyst))
        .await;
    let base = edge.gateway_with(&[]).await;

    let driver = std::env::temp_dir().join(format!("treven-docs-{}.js", uuid::Uuid::new_v4()));
    std::fs::write(&driver, DOCS_DRIVER).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&driver)
            .arg(base)
            .arg(token)
            .arg("dora@acme.example")
            .env("NODE_PATH", tools_dir().join("node/node_modules"))
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the console's result");
    assert_eq!(
        result,
        serde_json::json!({
            "models": true,
            "status": "200",
            "hasEmail": true,
            "foreign": [],
            "errors": [],
        })
    );
    edge.stop().await;
}
