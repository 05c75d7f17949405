//! aiortc 1.16 (PyPI, `tests/interop/aiortc_whip.py` in the venv of scripts/install-python)
//! publishes audio + video over WHIP and plays them over WHEP through a real
//! `shardcast serve` for 60 s, frames decoded in every 10 s of it, no peer closed: with
//! aiortc's default (balanced) bundle policy, and with max-bundle, which never started its
//! checks while our answer named the candidates in the first m-section only.

use shardcast_tests::interop::{publish_and_play, Stack};

#[test]
fn aiortc_with_its_default_bundle_policy_publishes_and_plays_for_a_minute() -> anyhow::Result<()> {
    publish_and_play(Stack::AiortcBalanced)
}

#[test]
fn aiortc_with_max_bundle_publishes_and_plays_for_a_minute() -> anyhow::Result<()> {
    publish_and_play(Stack::AiortcMaxBundle)
}
