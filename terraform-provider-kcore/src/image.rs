//! `kcore_image`: ImportImage (a path on the node or an http(s) URL, checked against
//! `sha256` when given) / ListImages / DeleteImage. Any change replaces the image.

use async_trait::async_trait;
use kcore_client::Client;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, changed, computed, optional_computed, required, s};

pub struct ImageResource(pub Shared);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub source: Value<String>,
    pub sha256: Value<String>,
    pub node: Value<String>,
    pub pool: Value<String>,
    pub format: Value<String>,
    pub virtual_size: Value<i64>,
}

fn size(bytes: u64) -> Value<i64> {
    Value::Value(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// `planned` with what the server reports filled in where it was unknown.
fn fill(planned: &ImageState, image: &pb::Image) -> ImageState {
    let pick = |p: &Value<String>, v: &str| {
        if p.is_unknown() {
            Value::Value(v.to_string())
        } else {
            p.clone()
        }
    };
    ImageState {
        id: Value::Value(format!("{}/{}/{}", image.node, image.pool, image.name)),
        name: planned.name.clone(),
        source: planned.source.clone(),
        sha256: pick(&planned.sha256, &image.sha256),
        node: pick(&planned.node, &image.node),
        pool: pick(&planned.pool, &image.pool),
        format: Value::Value(image.format.clone()),
        virtual_size: size(image.virtual_size),
    }
}

async fn find(
    client: &Client,
    st: &ImageState,
) -> Result<Option<pb::Image>, kcore_client::ClientError> {
    let images = client
        .api()
        .list_images(pb::ListImagesRequest { node: s(&st.node) })
        .await
        .map_err(|e| client.error(e))?
        .into_inner()
        .images;
    Ok(images
        .into_iter()
        .find(|i| i.name == s(&st.name) && (st.pool.is_null() || i.pool == s(&st.pool))))
}

#[async_trait]
impl Resource for ImageResource {
    type State<'a> = ImageState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let t = AttributeType::String;
        Some(Schema {
            version: 1,
            block: block(
                "An image imported into a node's dir pool, to clone boot disks from",
                vec![
                    ("id", computed(t.clone(), "NODE/POOL/NAME")),
                    ("name", required(t.clone(), "[a-z0-9][a-z0-9-]{0,62}")),
                    (
                        "source",
                        required(
                            t.clone(),
                            "A path on the node (over TLS: under its --import-dir) or an http(s) URL; qcow2 or raw",
                        ),
                    ),
                    (
                        "sha256",
                        optional_computed(
                            t.clone(),
                            "Expected SHA-256 (hex); the import fails if it differs",
                        ),
                    ),
                    (
                        "node",
                        optional_computed(t.clone(), "Node to import on (default: the only node)"),
                    ),
                    (
                        "pool",
                        optional_computed(t.clone(), "Dir pool (default \"default\")"),
                    ),
                    ("format", computed(t, "qcow2 or raw")),
                    ("virtual_size", computed(AttributeType::Number, "Bytes")),
                ],
                vec![],
            ),
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match find(&client, &state).await {
            Ok(Some(image)) => {
                let mut next = fill(&state, &image);
                next.node = Value::Value(image.node.clone());
                next.pool = Value::Value(image.pool.clone());
                if !matches!(&state.sha256, Value::Value(p) if p.eq_ignore_ascii_case(&image.sha256))
                {
                    next.sha256 = Value::Value(image.sha256.clone());
                }
                Some((next, private))
            }
            Ok(None) => None,
            Err(e) if diag::is_not_found(&e) => None,
            Err(e) => {
                diag::api(diags, format!("reading image {}", s(&state.name)), &e);
                Some((state, private))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        planned.id = Value::Unknown;
        planned.format = Value::Unknown;
        planned.virtual_size = Value::Unknown;
        for v in [&mut planned.sha256, &mut planned.node, &mut planned.pool] {
            if v.is_null() {
                *v = Value::Unknown;
            }
        }
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = changed(
            &[
                ("name", &prior.name, &config.name),
                ("source", &prior.source, &config.source),
            ],
            false,
        );
        replace.extend(changed(
            &[
                ("node", &prior.node, &config.node),
                ("pool", &prior.pool, &config.pool),
            ],
            true,
        ));
        if let Value::Value(want) = &config.sha256
            && !s(&prior.sha256).eq_ignore_ascii_case(want)
        {
            replace.push(AttributePath::new("sha256"));
        }
        Some((proposed, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        let name = s(&planned.name);
        let request = pb::ImportImageRequest {
            name: name.clone(),
            source: s(&planned.source),
            sha256: s(&planned.sha256),
            node: s(&planned.node),
            pool: s(&planned.pool),
            caller: None,
        };
        let mut stream = match client.api().import_image(request).await {
            Ok(r) => r.into_inner(),
            Err(st) => {
                diag::api(diags, format!("importing image {name}"), &client.error(st));
                return None;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(progress)) => {
                    if let Some(image) = progress.image {
                        return Some((fill(&planned, &image), private));
                    }
                }
                Ok(None) => {
                    diags.root_error(
                        format!("importing image {name}"),
                        "the import ended without the image",
                    );
                    return None;
                }
                Err(st) => {
                    diag::api(diags, format!("importing image {name}"), &client.error(st));
                    return None;
                }
            }
        }
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.0.client(diags)?;
        let name = s(&state.name);
        let request = pb::DeleteImageRequest {
            name: name.clone(),
            node: s(&state.node),
            pool: s(&state.pool),
        };
        let result = client.api().delete_image(request).await;
        diag::deleted(diags, &client, format!("deleting image {name}"), result)
    }
}
