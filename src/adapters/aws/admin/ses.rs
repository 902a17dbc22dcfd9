//! SES v2 contact lists, for `quilt-notify topics sync`: read a list's topics, create the list,
//! replace its topics.

use aws_sdk_sesv2::types::{SubscriptionStatus, Topic};
use aws_sdk_sesv2::Client;

use super::AdminError;
use crate::adapters::aws::AwsError;

/// One topic of a contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTopic {
    /// The name SendEmail's `ListManagementOptions` names.
    pub name: String,
    /// What recipients see on SES's subscription page.
    pub display_name: String,
    /// One line about it.
    pub description: String,
}

/// Contact-list calls.
#[derive(Debug, Clone)]
pub struct SesAdmin {
    client: Client,
}

impl SesAdmin {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The list's topics, or None when there is no such list.
    ///
    /// # Errors
    /// The call failed for another reason than a missing list.
    pub async fn topics(&self, contact_list: &str) -> Result<Option<Vec<ListTopic>>, AdminError> {
        let output = match self
            .client
            .get_contact_list()
            .contact_list_name(contact_list)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let error = AdminError::call("GetContactList", &e);
                return match error.code.as_str() {
                    "NotFoundException" => Ok(None),
                    _ => Err(error),
                };
            }
        };
        Ok(Some(
            output
                .topics()
                .iter()
                .map(|t| ListTopic {
                    name: t.topic_name().to_owned(),
                    display_name: t.display_name().to_owned(),
                    description: t.description().unwrap_or_default().to_owned(),
                })
                .collect(),
        ))
    }

    /// Creates the list with these topics.
    ///
    /// # Errors
    /// The call failed.
    pub async fn create(&self, contact_list: &str, topics: &[ListTopic]) -> Result<(), AdminError> {
        self.client
            .create_contact_list()
            .contact_list_name(contact_list)
            .description("Topics of quilt-notify routes: recipients can leave each one.")
            .set_topics(Some(sdk_topics("CreateContactList", topics)?))
            .send()
            .await
            .map_err(|e| AdminError::call("CreateContactList", &e))?;
        Ok(())
    }

    /// Replaces the list's topics with these (UpdateContactList takes the whole list).
    ///
    /// # Errors
    /// The call failed.
    pub async fn set_topics(
        &self,
        contact_list: &str,
        topics: &[ListTopic],
    ) -> Result<(), AdminError> {
        self.client
            .update_contact_list()
            .contact_list_name(contact_list)
            .set_topics(Some(sdk_topics("UpdateContactList", topics)?))
            .send()
            .await
            .map_err(|e| AdminError::call("UpdateContactList", &e))?;
        Ok(())
    }
}

/// Topics as SES takes them: everyone subscribed until they leave (the route's recipients were
/// chosen by the operator or the package, not by signing up).
fn sdk_topics(operation: &'static str, topics: &[ListTopic]) -> Result<Vec<Topic>, AdminError> {
    topics
        .iter()
        .map(|t| {
            Topic::builder()
                .topic_name(&t.name)
                .display_name(&t.display_name)
                .description(&t.description)
                .default_subscription_status(SubscriptionStatus::OptIn)
                .build()
                .map_err(|e| AdminError::build(operation, e))
        })
        .collect()
}
