//! A real browser (Debian's Chromium, driven by playwright-core) on its own
//! origin calls a service over gRPC-web through the gateway, as the
//! frontend does: CORS preflight, bearer token, binary grpc-web framing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use axum::response::Html;
use support::{Edge, tools_dir};
use treven_mesh::Role;

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
    out.textContent = JSON.stringify({ http: response.status, grpcStatus: status, hasEmail: message.includes(params.get('email')) });
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
async fn chromium_calls_a_service_over_grpc_web() {
    let edge = Edge::start(10_000).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/", axum::routing::get(|| async { Html(PAGE) })),
        )
        .await
    });
    let base = edge
        .gateway_with(&[("TREVEN_CORS_ORIGINS", origin.clone())])
        .await;
    let acme = edge.org("Acme").await;
    let (_, token) = edge
        .member("ann@acme.example", acme, Some(Role::Analyst))
        .await;

    let driver = std::env::temp_dir().join(format!("treven-driver-{}.js", uuid::Uuid::new_v4()));
    std::fs::write(&driver, DRIVER).unwrap();
    let url = format!("{origin}/#base={base}&token={token}&email=ann@acme.example");
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
        serde_json::json!({"http": 200, "grpcStatus": "0", "hasEmail": true})
    );
    edge.stop().await;
}
