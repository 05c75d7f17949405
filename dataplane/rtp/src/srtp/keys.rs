//! From DTLS keying material to ready ciphers: the RFC 5764 §4.2 split into the client's and
//! the server's master key and salt, and the RFC 3711 §4.3 key derivation (AES-CM PRF,
//! key_derivation_rate 0) of each direction's SRTP and SRTCP session keys.
//!
//! Runs once per transport, never per packet. Must never log or keep key bytes beyond
//! the ciphers it builds (the master keys live on this function's stack only).

use str0m::config::CryptoProvider;

use super::cipher::Cipher;
use super::{DtlsKeys, Profile, SrtpError};

/// RFC 3711 §4.3.2 labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// HMAC-SHA1 session authentication key (RFC 3711 §4.2.1: n_a = 160 bits).
const CM_AUTH_KEY_LEN: usize = 20;

/// One side's master key and salt (only the first `key_len`/`salt_len` bytes are used).
pub(super) struct Master {
    key: [u8; 32],
    key_len: usize,
    salt: [u8; 14],
    salt_len: usize,
}

impl Master {
    pub(super) fn new(key: &[u8], salt: &[u8]) -> Option<Master> {
        let mut m = Master {
            key: [0; 32],
            key_len: key.len(),
            salt: [0; 14],
            salt_len: salt.len(),
        };
        m.key.get_mut(..key.len())?.copy_from_slice(key);
        m.salt.get_mut(..salt.len())?.copy_from_slice(salt);
        Some(m)
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

/// Ours (what we seal with) and theirs (what we open with). The material is
/// client key ‖ server key ‖ client salt ‖ server salt; each side writes with its own.
pub(super) fn split(keys: &DtlsKeys) -> Result<(Master, Master), SrtpError> {
    let (k, s) = keys.profile.master_lens();
    let m = &keys.material;
    let expected = keys.profile.keying_material_len();
    if m.len() != expected {
        return Err(SrtpError::BadKeyingMaterial {
            expected,
            got: m.len(),
        });
    }
    let bad = SrtpError::BadKeyingMaterial {
        expected,
        got: m.len(),
    };
    let client = Master::new(&m[..k], &m[2 * k..2 * k + s]).ok_or(bad)?;
    let server = Master::new(&m[k..2 * k], &m[2 * k + s..]).ok_or(bad)?;
    Ok(if keys.dtls_client {
        (client, server)
    } else {
        (server, client)
    })
}

/// The RTP and the RTCP cipher of one direction.
pub(super) struct Direction {
    pub(super) rtp: Cipher,
    pub(super) rtcp: Cipher,
}

pub(super) fn derive_session(
    provider: &CryptoProvider,
    profile: Profile,
    master: &Master,
) -> Direction {
    let one = |enc_label, auth_label, salt_label| {
        let enc_len = master.key_len;
        let salt_len = match profile {
            Profile::Aes128CmSha1_80 => 14,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 12,
        };
        let auth_len = match profile {
            Profile::Aes128CmSha1_80 => CM_AUTH_KEY_LEN,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 0,
        };
        let mut enc = [0u8; 32];
        let mut auth = [0u8; CM_AUTH_KEY_LEN];
        let mut salt = [0u8; 14];
        derive(provider, master, enc_label, &mut enc[..enc_len]);
        derive(provider, master, auth_label, &mut auth[..auth_len]);
        derive(provider, master, salt_label, &mut salt[..salt_len]);
        Cipher::new(
            profile,
            &enc[..enc_len],
            &auth[..auth_len],
            &salt[..salt_len],
        )
    };
    Direction {
        rtp: one(LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT),
        rtcp: one(LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT),
    }
}

/// RFC 3711 §4.3.1/§4.3.3 with key_derivation_rate 0: the AES-CM keystream under the
/// master key, started at IV = (master_salt ⊕ (label · 2^48)) · 2^16. A 96-bit salt (the
/// AEAD profiles) is the 112-bit one with its low 16 bits zero (RFC 7714 §11); a 256-bit
/// master key runs AES-256 (RFC 6188 §3).
pub(super) fn derive(provider: &CryptoProvider, master: &Master, label: u8, out: &mut [u8]) {
    let mut x = [0u8; 16];
    x[..master.salt_len].copy_from_slice(&master.salt[..master.salt_len]);
    // The label sits 48 bits above the salt's low end: byte 13 - 6 of the 14-byte salt.
    x[7] ^= label;
    // Providers may write a padding block after the one asked for.
    let mut block = [0u8; 32];
    for (counter, chunk) in (0u16..).zip(out.chunks_mut(16)) {
        x[14..].copy_from_slice(&counter.to_be_bytes());
        let ecb = provider.srtp_provider;
        if master.key_len == 32 {
            ecb.srtp_aes_256_ecb_round(master.key(), &x, &mut block);
        } else {
            ecb.srtp_aes_128_ecb_round(master.key(), &x, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 Appendix B.3, key derivation test vectors.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let provider = str0m::crypto::from_feature_flags();
        let master = Master::new(
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut enc = [0u8; 16];
        derive(&provider, &master, LABEL_RTP_ENCRYPTION, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&provider, &master, LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        // The RFC lists 256 bits of the auth keystream; SHA1-HMAC uses the first 160.
        let mut auth = [0u8; 32];
        derive(&provider, &master, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE")
        );
    }

    #[test]
    fn the_dtls_client_writes_with_the_first_key_and_salt() {
        let material: Vec<u8> = (0..60).collect();
        let keys = |dtls_client| DtlsKeys {
            profile: Profile::Aes128CmSha1_80,
            material: material.clone(),
            dtls_client,
        };
        let (ours, theirs) = split(&keys(true)).unwrap();
        assert_eq!(ours.key(), &material[..16]);
        assert_eq!(&ours.salt[..], &material[32..46]);
        assert_eq!(theirs.key(), &material[16..32]);
        assert_eq!(&theirs.salt[..], &material[46..60]);
        let (ours, _) = split(&keys(false)).unwrap();
        assert_eq!(ours.key(), &material[16..32]);

        let short = DtlsKeys {
            material: vec![0; 59],
            ..keys(true)
        };
        assert_eq!(
            split(&short).err(),
            Some(SrtpError::BadKeyingMaterial {
                expected: 60,
                got: 59
            })
        );
    }
}
