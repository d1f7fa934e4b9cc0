//! The agent as a library: started in the test's own process, answering its API, stopped with
//! every task drained (the data dir's lock and the store released: the same node starts again
//! on it and still holds what was written).

use clap::Parser;
use flotilla::agent::{Agent, Config};
use flotilla::cli::client::Client;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    config: Config,
}

fn config(dir: &std::path::Path, init: bool) -> Config {
    let mut args = vec![
        "agent",
        "--pod-network",
        "none",
        "--api-addr",
        "127.0.0.1:0",
        "--cluster-addr",
        "127.0.0.1:0",
        "--node-name",
        "lib-1",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    if init {
        args.push("--init");
    }
    Flags::parse_from(args).config
}

/// Waits until the node's bootstrap objects (its Node, the namespaces) are stored: they are
/// written in the background through the quorum after the start returns.
async fn ready(client: &Client) {
    for _ in 0..600 {
        let r = client
            .send(
                reqwest::Method::GET,
                "/api/v1/nodes/lib-1",
                &[],
                None::<&serde_json::Value>,
            )
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the in-process agent did not write its Node within 30 s");
}

#[test]
fn an_agent_started_in_process_serves_and_shuts_down_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let agent = Agent::start(config(dir.path(), true)).await.unwrap();
        assert_eq!(agent.node(), "lib-1");
        assert!(agent.api_addr().port() > 0);
        let client = Client::from_config_file(&dir.path().join("admin.yaml")).unwrap();
        ready(&client).await;
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kept"}, "data": {"a": "1"}});
        let resp = client
            .send(
                reqwest::Method::POST,
                "/api/v1/namespaces/default/configmaps",
                &[],
                Some(&body),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        // Shutdown returns only when every part has stopped, within its grace.
        tokio::time::timeout(std::time::Duration::from_secs(30), agent.shutdown())
            .await
            .expect("shutdown drains within 30 s");
        // The lock and the store are free: the node resumes on the same dir.
        let agent = Agent::start(config(dir.path(), false)).await.unwrap();
        let client = Client::from_config_file(&dir.path().join("admin.yaml")).unwrap();
        let resp = client
            .send(
                reqwest::Method::GET,
                "/api/v1/namespaces/default/configmaps/kept",
                &[],
                None::<&serde_json::Value>,
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cm: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(cm["data"]["a"], "1");
        agent.shutdown().await;
    });
}
