//! The grants table: one item per grant with its status, cursors, lease and counters. Status
//! changes are monotonic in the notification time (`status_version`), so a replayed or late
//! `grant.expired` cannot undo a later re-authentication.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::store::{StoreError, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    Expired,
    Deleted,
    Invalid,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "expired" => Self::Expired,
            "deleted" => Self::Deleted,
            "invalid" => Self::Invalid,
            _ => return None,
        })
    }
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub status: GrantStatus,
    pub status_version: Version,
    pub provider: Option<String>,
    /// Unix seconds of the last `grant.expired`.
    pub expired_at: Option<i64>,
    /// Reconcile cursor for messages (Unix s); `None` until the first backfill ran.
    pub messages_received_after: Option<i64>,
}

/// What a status change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Applied; the grant's previous state (None if it was unknown).
    Applied { previous: Option<Grant> },
    /// A newer status is already stored.
    Stale,
}

#[derive(Clone)]
pub struct GrantStore {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
}

fn dynamo_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Dynamo(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub fn grant_of(item: &HashMap<String, AttributeValue>) -> Option<Grant> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(Grant {
        grant_id: text("grant_id")?,
        status: GrantStatus::parse(&text("status")?)?,
        status_version: num(item, "status_version").unwrap_or(0),
        provider: text("provider"),
        expired_at: num(item, "expired_at"),
        messages_received_after: num(item, "messages_received_after"),
    })
}

impl GrantStore {
    pub async fn get(&self, grant_id: &str) -> Result<Option<Grant>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(out.item.as_ref().and_then(grant_of))
    }

    /// Sets the status if `version` is newer than the stored status, with the extra attributes
    /// given (`provider`, `expired_at`, ...). Returns the previous state.
    pub async fn set_status(
        &self,
        grant_id: &str,
        status: GrantStatus,
        version: Version,
        extra: &[(&str, AttributeValue)],
    ) -> Result<StatusChange, StoreError> {
        let mut update =
            String::from("SET #status = :status, status_version = :v, status_changed_at = :now");
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("grant_id", AttributeValue::S(grant_id.into()))
            .condition_expression("attribute_not_exists(status_version) OR status_version < :v")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(
                ":now",
                AttributeValue::N(crate::clock::now_ms().to_string()),
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None);
        for (i, (name, value)) in extra.iter().enumerate() {
            update.push_str(&format!(", #x{i} = :x{i}"));
            req = req
                .expression_attribute_names(format!("#x{i}"), *name)
                .expression_attribute_values(format!(":x{i}"), value.clone());
        }
        match req.update_expression(update).send().await {
            Ok(out) => Ok(StatusChange::Applied {
                previous: out.attributes.as_ref().and_then(grant_of),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(StatusChange::Stale)
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }
}
