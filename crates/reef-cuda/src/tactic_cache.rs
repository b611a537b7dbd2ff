//! The tactic cache: what `REEF_TACTICS=tune` chose for each GEMM kernel,
//! kept on disk next to the kernel module, so that a model loads again with
//! the same tactics without timing them (faster loads, and the same
//! results after a restart: tactics change the order of split-K sums).
//!
//! One file per scope (`<cache dir>/tactics/<scope>.tsv`): a scope is the
//! GPU (name and SM count), the compiled kernel module (its cache key) and
//! the device options that change launches. Each line holds a kernel key
//! (the SHA-256 of the scope and of the kernel's launch as the rules build
//! it: family, tiles and parameter bytes at fixed placeholder addresses,
//! so the same layer of the same plan finds its entry), the chosen tile and
//! split count, and the two timings behind the choice. Lines are appended;
//! the last one of a key wins; a line that does not parse is skipped with a
//! warning. Delete the file to tune again.

use crate::geometry::GemmTile;
use crate::launch::Launch;
use crate::tactics::Tactic;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A cached choice: the tactic and the times (us) that chose it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedTactic {
    /// The chosen tactic (may be the rules' own).
    pub tactic: Tactic,
    /// The rules' tactic's time when it was tuned, microseconds.
    pub rule_us: f64,
    /// The chosen tactic's time, microseconds.
    pub chosen_us: f64,
}

/// Tuned tactics by kernel key, backed by a file when there is a cache
/// folder.
pub struct TacticCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, CachedTactic>>,
}

/// The scope key of a set of parts (GPU, module key, options), hex.
pub fn scope_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"reef tactics v1");
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The key of a kernel's launch (as the rules build it) within `scope`, hex.
pub fn kernel_key(scope: &str, launch: &Launch) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(launch.family.base_name().as_bytes());
    h.update(launch.tiles.to_le_bytes());
    h.update(launch.params.bytes());
    hex::encode(&h.finalize()[..16])
}

fn tile_name(t: GemmTile) -> &'static str {
    match t {
        GemmTile::Large => "large",
        GemmTile::Medium => "medium",
        GemmTile::Tall => "tall",
        GemmTile::Wg => "wg",
        GemmTile::WgS => "wg_s",
        GemmTile::WgMat => "wg_mat",
    }
}

fn tile_from_name(s: &str) -> Option<GemmTile> {
    GemmTile::ALL.into_iter().find(|&t| tile_name(t) == s)
}

/// One line of the file (without the newline).
fn format_line(key: &str, c: &CachedTactic) -> String {
    format!(
        "{key}\t{}\t{}\t{:.3}\t{:.3}",
        tile_name(c.tactic.tile),
        c.tactic.splits,
        c.rule_us,
        c.chosen_us
    )
}

fn parse_line(line: &str) -> Option<(String, CachedTactic)> {
    let f: Vec<&str> = line.split('\t').collect();
    let [key, tile, splits, rule_us, chosen_us] = f.as_slice() else {
        return None;
    };
    if key.len() != 32 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let splits: u64 = splits.parse().ok().filter(|&s| s >= 1)?;
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    Some((
        key.to_string(),
        CachedTactic {
            tactic: Tactic {
                tile: tile_from_name(tile)?,
                splits,
            },
            rule_us: num(rule_us)?,
            chosen_us: num(chosen_us)?,
        },
    ))
}

impl TacticCache {
    /// The cache of `scope` under `dir` (`None`: in memory only), with the
    /// entries its file holds.
    pub fn open(dir: Option<&Path>, scope: &str) -> Self {
        let path = dir.map(|d| d.join("tactics").join(format!("{scope}.tsv")));
        let mut entries = HashMap::new();
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let mut bad = 0usize;
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        match parse_line(line) {
                            Some((k, c)) => {
                                entries.insert(k, c);
                            }
                            None => bad += 1,
                        }
                    }
                    if bad > 0 {
                        tracing::warn!(path = %p.display(), lines = bad, "skipped tactic cache lines that do not parse");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "could not read the tactic cache")
                }
            }
        }
        TacticCache {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// The file behind the cache, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The cached choice of kernel `key`.
    pub fn get(&self, key: &str) -> Option<CachedTactic> {
        self.entries.lock().get(key).copied()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds choices and appends them to the file (one write; a failure to
    /// write is logged, and the choices stay cached in memory).
    pub fn insert_all(&self, new: &[(String, CachedTactic)]) {
        if new.is_empty() {
            return;
        }
        let mut entries = self.entries.lock();
        for (k, c) in new {
            entries.insert(k.clone(), *c);
        }
        drop(entries);
        let Some(p) = &self.path else {
            return;
        };
        let mut text = String::new();
        for (k, c) in new {
            text.push_str(&format_line(k, c));
            text.push('\n');
        }
        let write = || -> std::io::Result<()> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?
                .write_all(text.as_bytes())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %p.display(), error = %e, "could not write the tactic cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Family;
    use crate::params::{MatMulParams, Params};

    fn cached(tile: GemmTile, splits: u64) -> CachedTactic {
        CachedTactic {
            tactic: Tactic { tile, splits },
            rule_us: 12.5,
            chosen_us: 9.25,
        }
    }

    fn launch(m: i32) -> Launch {
        Launch {
            family: Family::MatMulTc,
            tiles: 4,
            params: Params::MatMul(MatMulParams {
                m,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn keys_follow_the_scope_and_every_launch_field() {
        let s = scope_key(&["NVIDIA H100", "132", "abc"]);
        assert_eq!(s.len(), 32);
        assert_eq!(s, scope_key(&["NVIDIA H100", "132", "abc"]));
        assert_ne!(s, scope_key(&["NVIDIA H200", "132", "abc"]));
        assert_ne!(scope_key(&["a", "bc"]), scope_key(&["ab", "c"]));
        let k = kernel_key(&s, &launch(7));
        assert_eq!(k, kernel_key(&s, &launch(7)));
        assert_ne!(k, kernel_key(&s, &launch(8)));
        assert_ne!(k, kernel_key(&scope_key(&["x"]), &launch(7)));
        let mut other = launch(7);
        other.family = Family::MatMulTcW;
        assert_ne!(k, kernel_key(&s, &other));
    }

    #[test]
    fn lines_round_trip_and_bad_ones_are_rejected() {
        let key = "0123456789abcdef0123456789abcdef";
        for t in [
            GemmTile::Large,
            GemmTile::Medium,
            GemmTile::Tall,
            GemmTile::Wg,
            GemmTile::WgS,
        ] {
            let c = cached(t, 3);
            assert_eq!(
                parse_line(&format_line(key, &c)),
                Some((key.to_string(), c))
            );
        }
        for bad in [
            "",
            "0123\tmedium\t1\t1\t1",
            "0123456789abcdef0123456789abcdef\thuge\t1\t1\t1",
            "0123456789abcdef0123456789abcdef\tmedium\t0\t1\t1",
            "0123456789abcdef0123456789abcdef\tmedium\t2\tnan\t1",
            "0123456789abcdef0123456789abcdef\tmedium\t2\t1",
            "0123456789abcdef0123456789abcdef\tmedium\t2\t1\t1\textra",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn choices_persist_and_the_last_line_of_a_key_wins() {
        let dir = std::env::temp_dir().join(format!("reef-tactics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scope = scope_key(&["test"]);
        let a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_string();
        let b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".to_string();
        let cache = TacticCache::open(Some(&dir), &scope);
        assert!(cache.is_empty());
        cache.insert_all(&[(a.clone(), cached(GemmTile::Tall, 2))]);
        cache.insert_all(&[
            (b.clone(), cached(GemmTile::Medium, 1)),
            (a.clone(), cached(GemmTile::Large, 4)),
        ]);
        assert_eq!(cache.get(&a), Some(cached(GemmTile::Large, 4)));
        // A torn or foreign line in the file is skipped on the next open.
        let path = cache.path().unwrap().to_path_buf();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"not a line\n").unwrap();
        let again = TacticCache::open(Some(&dir), &scope);
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&a), Some(cached(GemmTile::Large, 4)));
        assert_eq!(again.get(&b), Some(cached(GemmTile::Medium, 1)));
        // Another scope sees nothing; no folder keeps entries in memory.
        assert!(TacticCache::open(Some(&dir), &scope_key(&["other"])).is_empty());
        let mem = TacticCache::open(None, &scope);
        mem.insert_all(&[(a.clone(), cached(GemmTile::Tall, 2))]);
        assert_eq!(mem.get(&a), Some(cached(GemmTile::Tall, 2)));
        assert!(mem.path().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
