//! Where finalized documents' PDFs live (`BLOB_STORE`): a local directory by default — nothing
//! to set up — or an S3-compatible bucket (`s3://bucket/prefix`, credentials and endpoint from
//! the standard `AWS_*` variables, e.g. `AWS_ENDPOINT` for MinIO). A PDF is written once, at
//! finalization, under a key derived from its invoice; writing the same key again (a retried
//! finalization) writes the same bytes, since rendering is deterministic.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3ConfigKey;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("BLOB_STORE {0:?}: {1}")]
    Config(String, String),
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob key {0:?}: {1}")]
    Key(String, object_store::path::Error),
}

#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// What `BLOB_STORE` named (for logs).
    pub location: String,
}

impl Blobs {
    /// Opens `spec`: `s3://bucket[/prefix]` configured by `aws` (`AWS_*` variables:
    /// credentials, `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible stores, `AWS_ALLOW_HTTP`),
    /// or a local directory (created if missing).
    pub fn open(spec: &str, aws: &[(String, String)]) -> Result<Blobs, BlobError> {
        let bad = |e: &dyn std::fmt::Display| BlobError::Config(spec.to_string(), e.to_string());
        let store: Arc<dyn ObjectStore> = if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // The S3 client speaks TLS through rustls (ring, as everywhere in the platform);
            // reqwest panics when no provider is installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = object_store::aws::AmazonS3Builder::new();
            for (key, value) in aws {
                // Variables object_store does not know (AWS_PROFILE, …) are not for it.
                if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
            let s3 = builder
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(&e))?;
            if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(
                    s3,
                    prefix.trim_matches('/'),
                ))
            }
        } else {
            std::fs::create_dir_all(spec).map_err(|e| bad(&e))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(spec).map_err(|e| bad(&e))?,
            )
        };
        Ok(Blobs {
            store,
            location: spec.to_string(),
        })
    }

    fn path(key: &str) -> Result<Path, BlobError> {
        Path::parse(key).map_err(|e| BlobError::Key(key.to_string(), e))
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.store
            .put(&Self::path(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The object at `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        match self.store.get(&Self::path(key)?).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The key of an invoice's PDF: its generated id only (a tenant id may hold characters a key
/// must not, such as `/`).
pub fn pdf_key(invoice: &ids::InvoiceId) -> String {
    format!("invoices/{invoice}.pdf")
}
