//! Our items, conditions and changes in the SDK's terms: attribute values, keys, and
//! expressions with placeholders.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::SdkItem;
use crate::ports::{Attr, Changes, Cond, Item, ItemKey};

/// A condition or update expression being built, with its placeholders: `#nK` for names and
/// `:vK` for values, so no attribute name can clash with a reserved word.
#[derive(Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, n)| *n == name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, value: &Attr) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values
            .insert(placeholder.clone(), to_attribute(value.clone()));
        placeholder
    }

    pub(super) fn cond(&mut self, cond: &Cond) -> String {
        match cond {
            Cond::Absent => format!("attribute_not_exists({})", self.name("pk")),
            Cond::Eq(name, value) => format!("{} = {}", self.name(name), self.value(value)),
            Cond::Lt(name, bound) => {
                format!("{} < {}", self.name(name), self.value(&Attr::N(*bound)))
            }
            Cond::Missing(name) => format!("attribute_not_exists({})", self.name(name)),
            Cond::All(all) => self.join(all, " AND "),
            Cond::Any(any) => self.join(any, " OR "),
        }
    }

    fn join(&mut self, parts: &[Cond], with: &str) -> String {
        let parts: Vec<String> = parts.iter().map(|c| self.cond(c)).collect();
        format!("({})", parts.join(with))
    }

    pub(super) fn changes(&mut self, changes: &Changes) -> String {
        let mut text = String::new();
        if !changes.set.is_empty() {
            let set: Vec<String> = changes
                .set
                .iter()
                .map(|(name, value)| format!("{} = {}", self.name(name), self.value(value)))
                .collect();
            text = format!("SET {}", set.join(", "));
        }
        if !changes.remove.is_empty() {
            let remove: Vec<String> = changes.remove.iter().map(|name| self.name(name)).collect();
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&format!("REMOVE {}", remove.join(", ")));
        }
        text
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn to_attribute(value: Attr) -> AttributeValue {
    match value {
        Attr::S(s) => AttributeValue::S(s),
        Attr::N(n) => AttributeValue::N(n.to_string()),
        Attr::Bool(b) => AttributeValue::Bool(b),
    }
}

/// An SDK value as ours; kinds the protocol never writes are left out.
fn from_attribute(value: AttributeValue) -> Option<Attr> {
    match value {
        AttributeValue::S(s) => Some(Attr::S(s)),
        AttributeValue::N(n) => n.parse().ok().map(Attr::N),
        AttributeValue::Bool(b) => Some(Attr::Bool(b)),
        _ => None,
    }
}

pub(super) fn to_sdk(item: Item) -> SdkItem {
    item.into_iter()
        .map(|(name, value)| (name, to_attribute(value)))
        .collect()
}

/// An SDK item as ours.
pub(crate) fn from_sdk(item: SdkItem) -> Item {
    item.into_iter()
        .filter_map(|(name, value)| Some((name, from_attribute(value)?)))
        .collect()
}

pub(super) fn sdk_key(key: &ItemKey) -> SdkItem {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

pub(super) fn item_key(item: &Item) -> ItemKey {
    let part = |name: &str| {
        item.get(name)
            .and_then(Attr::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    ItemKey {
        pk: part("pk"),
        sk: part("sk"),
    }
}
