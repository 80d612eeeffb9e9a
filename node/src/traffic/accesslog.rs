//! `accesslog`: whether one request of a service is written to the access log. A document for
//! the service decides (on or off, and the share sampled); without one, the node's
//! configuration does (`[access_log] services`, every request). Pure: the draw is an argument.

use murmur_membership::policy::spec::AccessLogSpec;

use super::fault::percent_of;

/// Whether to log a request: by the service's document if it has one (`doc`), else by the
/// node's configuration (`configured`). `draw` is called only when a share is sampled.
pub fn sampled(doc: Option<&AccessLogSpec>, configured: bool, draw: impl FnOnce() -> u64) -> bool {
    match doc {
        None => configured,
        Some(d) if !d.enabled || d.sample_percent <= 0.0 => false,
        Some(d) if d.sample_percent >= 100.0 => true,
        Some(d) => percent_of(draw()) < d.sample_percent,
    }
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::{Kind, PolicyBody};

    use super::*;

    fn doc(extra: &str) -> AccessLogSpec {
        let text = format!("name = \"l\"\nservice = \"web\"\n{extra}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        match PolicyBody::from_value(Kind::Accesslog, v).unwrap() {
            PolicyBody::Accesslog(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn documents_win_over_the_configuration() {
        let on = doc("");
        let off = doc("enabled = false");
        let tenth = doc("sample_percent = 10");
        let never = || -> u64 { panic!("no draw needed") };
        assert!(!sampled(None, false, never));
        assert!(sampled(None, true, never));
        assert!(sampled(Some(&on), false, never));
        assert!(!sampled(Some(&off), true, never));
        let hits = (0..10_000u64)
            .filter(|i| {
                sampled(Some(&tenth), false, || {
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                })
            })
            .count();
        assert!((900..=1100).contains(&hits), "{hits}");
    }
}
