//! The installed MiniLM through our tokenizer: paraphrases land close,
//! unrelated sentences far. Needs the models from scripts/setup.sh.

use vx_plugin_api::HostContext;
use vx_plugin_text_embed::{DIMS, TextEmbed};

fn model() -> TextEmbed {
    let ctx = HostContext {
        cache_dir: vx_config::installed_cache_dir(),
        threads: 2,
    };
    TextEmbed::open(&ctx).expect("MiniLM is installed (run scripts/setup.sh)")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let mut m = model();
    let texts: Vec<String> = [
        "ocean waves",
        "the sea was rough",
        "a dog runs on the beach",
        "a puppy playing by the sea",
        "the tax deadline is next Friday",
        "quarterly earnings call transcript",
        "",
    ]
    .map(String::from)
    .to_vec();
    let v = m.embed_all(&texts).unwrap();
    assert_eq!(v.len(), texts.len());
    for x in &v {
        assert_eq!(x.len(), DIMS);
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "unit vectors, got norm {norm}");
    }
    let pairs = [(0, 1), (2, 3), (0, 4), (1, 4), (2, 5), (0, 5), (0, 6)];
    for (a, b) in pairs {
        println!(
            "cos({:?}, {:?}) = {:.3}",
            texts[a],
            texts[b],
            cos(&v[a], &v[b])
        );
    }
    let floor = vx_index::SEMANTIC_FLOOR;
    assert!(cos(&v[0], &v[1]) > floor, "ocean waves ~ the sea was rough");
    assert!(cos(&v[2], &v[3]) > floor, "dog on beach ~ puppy by the sea");
    for (a, b) in [(0, 4), (1, 4), (2, 5), (0, 5)] {
        assert!(
            cos(&v[a], &v[b]) < floor,
            "{:?} vs {:?}",
            texts[a],
            texts[b]
        );
    }
    // Batching and padding do not change a vector.
    let alone = m.embed_all(&texts[1..2]).unwrap();
    assert!(cos(&alone[0], &v[1]) > 0.9999);
}
