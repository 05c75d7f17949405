//! A page on another origin (a customer's site, here a second local HTTP server) publishes
//! over WHIP and plays over WHEP in Chromium, so the browser itself enforces CORS: the
//! preflights, the `Authorization` header, reading `Location`. The player must decode the
//! publisher's video and receive its audio, and both sessions end with a cross-origin DELETE.
//! The same page against a server whose `http.cors.whip_origins` is empty must be refused by
//! the browser (the check that the first half is not passing by accident).

use std::path::Path;
use std::time::Duration;

use shardcast_tests::chromium::Browser;
use shardcast_tests::interop::dev_token;
use shardcast_tests::server::Server;
use shardcast_tests::static_site::StaticSite;
use shardcast_tests::wait_for;

fn pages() -> StaticSite {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pages");
    StaticSite::serve(&dir).expect("static site for tests/pages")
}

fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string")
}

#[test]
fn a_page_on_another_origin_publishes_over_whip_and_plays_over_whep() -> anyhow::Result<()> {
    let server = Server::start()?;
    let site = pages();
    assert_ne!(site.url(), server.base_url, "two origins");
    let base = &server.base_url;
    let mut page = Browser::launch("cross-origin", &format!("{}/cross_origin.html", site.url()))?;
    let publisher = dev_token(base, "stage", "cam")?;
    let viewer = dev_token(base, "stage", "viewer")?;

    let run = |page: &mut Browser| -> anyhow::Result<()> {
        let p = page.eval(&format!(
            "publish({}, {})",
            js(&format!("{base}/whip/stage")),
            js(&publisher)
        ))?;
        let p_loc = p["location"].as_str().unwrap_or_default().to_string();
        anyhow::ensure!(
            p_loc.starts_with("/whip/stage/"),
            "WHIP Location read by the page: {p}"
        );
        let v = page.eval(&format!(
            "play({}, {})",
            js(&format!("{base}/whep/stage")),
            js(&viewer)
        ))?;
        let v_loc = v["location"].as_str().unwrap_or_default().to_string();
        anyhow::ensure!(
            v_loc.starts_with("/whep/stage/"),
            "WHEP Location read by the page: {v}"
        );
        let got = wait_for(
            "the cross-origin player to decode video and receive audio",
            Duration::from_secs(20),
            || {
                let r = page.eval("received()")?;
                let ok = r["framesDecoded"].as_f64().unwrap_or(0.0) > 30.0
                    && r["audioSamples"].as_f64().unwrap_or(0.0) > 0.0;
                Ok(ok.then_some(r))
            },
        )?;
        eprintln!("cross-origin player: {got}");
        for (loc, token) in [(&v_loc, &viewer), (&p_loc, &publisher)] {
            let status = page.eval(&format!("end({}, {}, {})", js(base), js(loc), js(token)))?;
            anyhow::ensure!(status == 200, "DELETE {loc}: {status}");
        }
        Ok(())
    };
    if let Err(e) = run(&mut page) {
        let report = format!(
            "--- server log:\n{}\n{}",
            server.log_tail(40),
            page.diagnostics()
        );
        return Err(e.context(report));
    }
    drop(page);

    // With no other origin allowed the browser itself refuses: fetch() rejects.
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(config.path(), "[http.cors]\nwhip_origins = []\n")?;
    let strict = Server::start_with_args(&["--config", &config.path().display().to_string()])?;
    let mut page = Browser::launch("refused", &format!("{}/cross_origin.html", site.url()))?;
    let token = dev_token(&strict.base_url, "stage", "cam")?;
    let refused = page.eval(&format!(
        "publish({}, {})",
        js(&format!("{}/whip/stage", strict.base_url)),
        js(&token)
    ));
    let err = refused.expect_err("a WHIP POST from an origin that is not allowed must fail");
    anyhow::ensure!(
        err.to_string().contains("Failed to fetch"),
        "expected the browser's CORS refusal, got: {err:#}"
    );
    Ok(())
}
