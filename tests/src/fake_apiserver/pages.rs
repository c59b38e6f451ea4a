//! Paged lists, as a real API server gives them: a LIST with `limit=N` answers at most `N`
//! items and a `metadata.continue` token while more remain; a LIST with that token answers
//! the next items of the same list, as it was when the first page was read (a consistent
//! snapshot, with that page's resourceVersion). A token that is unknown (never given, or
//! dropped because too many lists are open) is answered 410 Gone with reason `Expired`,
//! as a real API server answers a token older than its compaction, and the client lists
//! again. kube's watcher asks for pages of 500, so a large cluster is never one response.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ApiError;

/// How many paged lists stay open at once; the oldest is dropped first.
const OPEN_LISTS: usize = 64;

/// The rest of one paged list.
#[derive(Debug)]
struct OpenList {
    kind: String,
    api_version: String,
    resource_version: String,
    items: Vec<Value>,
    next: usize,
}

/// The paged lists in progress, by the id in their continue tokens.
#[derive(Debug, Default)]
pub(crate) struct Pages {
    open: BTreeMap<u64, OpenList>,
    next_id: u64,
}

impl Pages {
    /// The first page of `list` (a whole `…List`) for `limit`: the list itself when it fits.
    pub(crate) fn first(&mut self, mut list: Value, limit: Option<usize>) -> Value {
        let Some(limit) = limit.filter(|l| *l > 0) else {
            return list;
        };
        let items = match list["items"].as_array_mut() {
            Some(items) if items.len() > limit => std::mem::take(items),
            _ => return list,
        };
        let open = OpenList {
            kind: list["kind"].as_str().unwrap_or_default().to_owned(),
            api_version: list["apiVersion"].as_str().unwrap_or_default().to_owned(),
            resource_version: list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            items,
            next: 0,
        };
        self.next_id += 1;
        let id = self.next_id;
        while self.open.len() >= OPEN_LISTS {
            self.open.pop_first();
        }
        self.open.insert(id, open);
        self.page(id, limit)
    }

    /// The page after the one whose `metadata.continue` was `token`.
    pub(crate) fn next(&mut self, token: &str, limit: Option<usize>) -> Result<Value, ApiError> {
        let id = token
            .parse::<u64>()
            .ok()
            .filter(|id| self.open.contains_key(id))
            .ok_or_else(|| {
                ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                )
            })?;
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        Ok(self.page(id, limit))
    }

    /// Up to `limit` items of open list `id`, with a continue token while more remain (the
    /// list is forgotten after its last page).
    fn page(&mut self, id: u64, limit: usize) -> Value {
        let Some(open) = self.open.get_mut(&id) else {
            return Value::Null;
        };
        let end = open.items.len().min(open.next.saturating_add(limit));
        let items: Vec<Value> = open.items[open.next..end].to_vec();
        open.next = end;
        let remaining = open.items.len() - end;
        let mut metadata = json!({"resourceVersion": open.resource_version});
        if remaining > 0 {
            metadata["continue"] = json!(id.to_string());
            metadata["remainingItemCount"] = json!(remaining);
        }
        let page = json!({
            "kind": open.kind,
            "apiVersion": open.api_version,
            "metadata": metadata,
            "items": items,
        });
        if remaining == 0 {
            self.open.remove(&id);
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize, rv: &str) -> Value {
        json!({
            "kind": "ServiceList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": rv},
            "items": (0..n).map(|i| json!({"metadata": {"name": format!("s{i}")}})).collect::<Vec<_>>(),
        })
    }

    fn names(page: &Value) -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_list_that_fits_is_one_answer() {
        let mut pages = Pages::default();
        let whole = list(3, "7");
        assert_eq!(pages.first(whole.clone(), Some(3)), whole);
        assert_eq!(pages.first(whole.clone(), None), whole);
        assert!(pages.open.is_empty());
    }

    #[test]
    fn pages_follow_their_token_to_the_end_with_the_first_resource_version() {
        let mut pages = Pages::default();
        let first = pages.first(list(5, "9"), Some(2));
        assert_eq!(names(&first), ["s0", "s1"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 3);
        let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
        let second = pages.next(&token, Some(2)).unwrap();
        assert_eq!(names(&second), ["s2", "s3"]);
        assert_eq!(second["metadata"]["resourceVersion"], "9");
        let last = pages.next(&token, Some(2)).unwrap();
        assert_eq!(names(&last), ["s4"]);
        assert!(last["metadata"].get("continue").is_none());
        // The list is done: its token is gone.
        assert_eq!(pages.next(&token, Some(2)).unwrap_err().code, 410);
    }

    #[test]
    fn an_unknown_or_dropped_token_is_410_expired() {
        let mut pages = Pages::default();
        assert_eq!(
            pages.next("nonsense", Some(2)).unwrap_err().reason,
            "Expired"
        );
        let first = pages.first(list(3, "1"), Some(1));
        let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
        for _ in 0..OPEN_LISTS {
            pages.first(list(3, "2"), Some(1));
        }
        assert_eq!(pages.next(&token, Some(1)).unwrap_err().code, 410);
    }
}
