//! Content digests as Docker writes them (`sha256:<64 hex>`), and the ChainID that names an image layer by
//! its whole ancestry. Not for: verifying layer contents (that would mean reading every layer's tar).

use sha2::{Digest as _, Sha256};

/// True when `s` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

/// True when `s` is exactly 64 lowercase hex digits (a Docker layer, image or container id).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ChainIDs of a stack of layers given their DiffIDs, base first:
/// `chain(L0) = diff(L0)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub fn chain_ids<S: AsRef<str>>(diff_ids: &[S]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chains.last() {
            None => diff.as_ref().to_owned(),
            Some(parent) => {
                let mut h = Sha256::new();
                h.update(parent.as_bytes());
                h.update(b" ");
                h.update(diff.as_ref().as_bytes());
                format!("sha256:{}", hex(&h.finalize()))
            }
        };
        chains.push(next);
    }
    chains
}

/// The sha256 digest of `bytes`, written `sha256:<hex>` (an image id is this digest of its config file).
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed independently with:
    //   printf '%s' "sha256:aaa… sha256:bbb…" | sha256sum
    #[test]
    fn chain_of_one_layer_is_its_diff_id() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(chain_ids(std::slice::from_ref(&d)), vec![d]);
    }

    #[test]
    fn chain_of_two_layers_hashes_parent_space_diff() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chains = chain_ids(&[a.clone(), b]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c");
    }

    #[test]
    fn digest_shapes() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0F".repeat(32))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_hex64(&"a".repeat(63)));
    }
}
