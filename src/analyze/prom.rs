//! A small client of Prometheus' HTTP query API (`/api/v1/query`, `/api/v1/query_range`):
//! just what `loadspec analyze` reads. Plain http, bounded in time and in body size.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::Deserialize;

/// The largest answer read (a month of 1 s samples of a few series fits many times over).
pub const MAX_BODY: usize = 64 << 20;
/// One query's time limit, also sent to Prometheus as `timeout`.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("--prometheus {0:?}: {1}")]
    Url(String, String),
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus answered {status} to {query:?}: {body}")]
    Status {
        status: u16,
        query: String,
        body: String,
    },
    #[error("Prometheus refused {query:?}: {error}")]
    Api { query: String, error: String },
    #[error("cannot read Prometheus' answer to {query:?}: {reason}")]
    Decode { query: String, reason: String },
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query: its labels and (unix seconds, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

fn number(s: &str) -> f64 {
    // Prometheus writes NaN, +Inf and -Inf as strings too; they parse as f64.
    s.parse().unwrap_or(f64::NAN)
}

impl Prometheus {
    /// `url` is Prometheus' base, e.g. `http://127.0.0.1:9090` (a path prefix is kept).
    pub fn new(url: &str) -> Result<Self, PromError> {
        let u = url::Url::parse(url).map_err(|e| PromError::Url(url.into(), e.to_string()))?;
        if u.scheme() != "http" {
            return Err(PromError::Url(
                url.into(),
                "only http:// is supported (reach an https Prometheus through `kubectl port-forward`)".into(),
            ));
        }
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Data, PromError> {
        let mut u = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| PromError::Url(self.base.clone(), e.to_string()))?;
        u.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .append_pair("timeout", &format!("{}s", QUERY_TIMEOUT.as_secs()));
        let uri: hyper::Uri = u
            .as_str()
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| {
                PromError::Url(self.base.clone(), e.to_string())
            })?;
        let unreachable = |reason: String| PromError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let resp =
            tokio::time::timeout(QUERY_TIMEOUT + Duration::from_secs(5), self.client.get(uri))
                .await
                .map_err(|_| unreachable("no answer in time".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| PromError::Decode {
                query: query.into(),
                reason: e.to_string(),
            })?
            .to_bytes();
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            if status != 200 {
                PromError::Status {
                    status,
                    query: query.into(),
                    body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                }
            } else {
                PromError::Decode {
                    query: query.into(),
                    reason: e.to_string(),
                }
            }
        })?;
        if answer.status != "success" {
            return Err(PromError::Api {
                query: query.into(),
                error: answer.error.unwrap_or_else(|| format!("status {status}")),
            });
        }
        answer.data.ok_or_else(|| PromError::Decode {
            query: query.into(),
            reason: "no data".into(),
        })
    }

    /// An instant query evaluated at `at` (unix seconds).
    pub async fn instant(&self, query: &str, at: f64) -> Result<Vec<Sample>, PromError> {
        let data = self
            .get(
                "/api/v1/query",
                &[("query", query.into()), ("time", format!("{at:.3}"))],
                query,
            )
            .await?;
        let decode = |reason: String| PromError::Decode {
            query: query.into(),
            reason,
        };
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> =
                    serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
                Ok(items
                    .into_iter()
                    .map(|i| Sample {
                        labels: i.metric,
                        value: number(&i.value.1),
                    })
                    .collect())
            }
            "scalar" => {
                let (_, v): (f64, String) =
                    serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
                Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: number(&v),
                }])
            }
            other => Err(decode(format!("expected a vector, got a {other}"))),
        }
    }

    /// A range query over [start, end] (unix seconds) at `step` seconds.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let data = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", query.into()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                    ("step", format!("{step:.3}")),
                ],
                query,
            )
            .await?;
        let items: Vec<MatrixItem> =
            serde_json::from_value(data.result).map_err(|e| PromError::Decode {
                query: query.into(),
                reason: e.to_string(),
            })?;
        Ok(items
            .into_iter()
            .map(|i| Series {
                labels: i.metric,
                points: i.values.into_iter().map(|(t, v)| (t, number(&v))).collect(),
            })
            .collect())
    }
}
