//! Redis connection set-up (rate limits, idempotency records, caches).

/// Opens a self-reconnecting Redis connection.
pub async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
        .set_number_of_retries(2);
    redis::aio::ConnectionManager::new_with_config(client, config).await
}
