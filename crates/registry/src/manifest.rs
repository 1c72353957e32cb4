//! Manifests as the registry serves them: image manifests (OCI, docker
//! schema 2), indexes (OCI, docker manifest lists), schema 1 refused.

use kiln_oci::{Digest, media};
use serde_json::Value;

use crate::platform::Platform;

/// Docker schema 1 manifest media types (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed docker schema 1 (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header of manifest requests: every kind kiln reads.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (entries of an index only).
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor without platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
        }
    }

    fn from_json(v: &Value) -> Result<Self, String> {
        let digest: Digest = v["digest"]
            .as_str()
            .ok_or("a descriptor has no digest")?
            .parse()
            .map_err(|e: kiln_oci::OciError| e.to_string())?;
        let size = v["size"]
            .as_u64()
            .ok_or_else(|| format!("descriptor {digest} has no size"))?;
        let platform = v.get("platform").and_then(|p| {
            Some(Platform {
                os: p["os"].as_str()?.to_owned(),
                architecture: p["architecture"].as_str()?.to_owned(),
                variant: p["variant"].as_str().map(str::to_owned),
            })
        });
        Ok(Self {
            media_type: v["mediaType"].as_str().unwrap_or_default().to_owned(),
            digest,
            size,
            platform,
        })
    }
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// An image manifest.
    Image {
        /// Its media type.
        media_type: String,
        /// The config blob.
        config: Descriptor,
        /// The layers, bottom first.
        layers: Vec<Descriptor>,
    },
    /// An index / manifest list.
    Index {
        /// Its media type.
        media_type: String,
        /// The manifests it lists.
        manifests: Vec<Descriptor>,
    },
    /// Docker schema 1.
    Schema1 {
        /// Its media type.
        media_type: String,
    },
}

/// Parse manifest bytes; `content_type` is the response's `Content-Type`
/// (used when the JSON has no `mediaType`, as OCI allows).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = v["mediaType"]
        .as_str()
        .or(ct)
        .map(str::to_owned)
        .unwrap_or_default();
    if v["schemaVersion"].as_u64() == Some(1)
        || media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
    {
        return Ok(Manifest::Schema1 {
            media_type: if media_type.is_empty() {
                DOCKER_SCHEMA1.to_owned()
            } else {
                media_type
            },
        });
    }
    if media::is_index(&media_type) || (media_type.is_empty() && v.get("manifests").is_some()) {
        let manifests = v["manifests"]
            .as_array()
            .ok_or("index has no `manifests` list")?
            .iter()
            .map(Descriptor::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Manifest::Index {
            media_type: if media_type.is_empty() {
                media::INDEX.to_owned()
            } else {
                media_type
            },
            manifests,
        });
    }
    if media_type.is_empty()
        || media_type == media::MANIFEST
        || media_type == media::DOCKER_MANIFEST
    {
        let config = Descriptor::from_json(&v["config"]).map_err(|e| format!("config: {e}"))?;
        let layers = v["layers"]
            .as_array()
            .ok_or("manifest has no `layers` list")?
            .iter()
            .map(Descriptor::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Manifest::Image {
            media_type: if media_type.is_empty() {
                media::MANIFEST.to_owned()
            } else {
                media_type
            },
            config,
            layers,
        });
    }
    Err(format!("unsupported manifest media type `{media_type}`"))
}

/// Pick the manifest for `wanted` from an index (the first match, like
/// containerd), or list what is offered.
pub fn select<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, Vec<String>> {
    manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        .ok_or_else(|| {
            manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                // Attestation manifests (BuildKit's) say unknown/unknown.
                .filter(|p| p.os != "unknown")
                .map(ToString::to_string)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn docker_v2s2_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":7}},"layers":[{{"mediaType":"{}","digest":"{D2}","size":9}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP
        );
        let Manifest::Image {
            media_type,
            config,
            layers,
        } = parse(m.as_bytes(), None).unwrap()
        else {
            panic!("not an image manifest")
        };
        assert_eq!(media_type, media::DOCKER_MANIFEST);
        assert_eq!(config.size, 7);
        assert_eq!(layers[0].digest.as_str(), D2);
    }

    #[test]
    fn oci_manifest_without_media_type_uses_content_type() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            parse(m.as_bytes(), Some(media::MANIFEST)).unwrap(),
            Manifest::Image { media_type, .. } if media_type == media::MANIFEST
        ));
    }

    #[test]
    fn schema1_is_recognised() {
        let m = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse(m.as_bytes(), Some(DOCKER_SCHEMA1_SIGNED)).unwrap(),
            Manifest::Schema1 { .. }
        ));
    }

    #[test]
    fn index_platform_selection() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
              {{"mediaType":"{}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
              {{"mediaType":"{}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{}","digest":"{D2}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            media::INDEX,
            media::MANIFEST,
            media::MANIFEST,
            media::MANIFEST
        );
        let Manifest::Index { manifests, .. } = parse(m.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            select(&manifests, &"linux/amd64".parse().unwrap())
                .unwrap()
                .digest
                .as_str(),
            D2
        );
        assert_eq!(
            select(&manifests, &"linux/arm".parse().unwrap())
                .unwrap()
                .digest
                .as_str(),
            D1
        );
        assert_eq!(
            select(&manifests, &"linux/s390x".parse().unwrap()).unwrap_err(),
            vec!["linux/arm/v7".to_owned(), "linux/amd64".to_owned()]
        );
    }

    #[test]
    fn malformed_manifests_are_errors() {
        for m in [
            "",
            "[]",
            r#"{"schemaVersion":2,"mediaType":"application/x"}"#,
            r#"{"schemaVersion":2,"config":{}}"#,
        ] {
            assert!(parse(m.as_bytes(), None).is_err(), "{m}");
        }
    }
}
