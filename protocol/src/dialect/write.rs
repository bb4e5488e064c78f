//! Writing a reply from a dialect's reply paths alone, for a stub standing in for a pool of a
//! dialect that has no reply template (a learned one never has: one captured reply shows
//! where each value is, and that is what the paths say). Each value goes where its path
//! points, creating the elements on the way once (values sharing a parent share it); the
//! update and each file element are new elements. Every prefix of `[reply.namespaces]` is
//! declared on the root, so what [`super::ReplyPaths::decode_offers`] reads back is what was
//! written.

use super::reply::{NoUpdate, ReplyPaths};
use super::tree::{Name, Path};
use crate::store::FileKind;
use crate::wire::CheckResponse;
use crate::xml;

#[derive(Default)]
struct El {
    name: Option<Name>,
    attrs: Vec<(Name, String)>,
    children: Vec<El>,
    text: String,
}

impl El {
    fn new(name: &Name) -> El {
        El {
            name: Some(name.clone()),
            ..El::default()
        }
    }

    /// The element `steps` lead to, made where missing; `fresh`: the last one is always new.
    fn at(&mut self, steps: &[Name], fresh: bool) -> &mut El {
        let Some((step, rest)) = steps.split_first() else {
            return self;
        };
        let found = if fresh && rest.is_empty() {
            None
        } else {
            self.children
                .iter()
                .position(|c| c.name.as_ref() == Some(step))
        };
        let index = found.unwrap_or_else(|| {
            self.children.push(El::new(step));
            self.children.len() - 1
        });
        self.children[index].at(rest, fresh)
    }

    fn set(&mut self, path: &Path, value: &str) {
        let el = self.at(&path.steps, false);
        match &path.attr {
            Some(a) => match el.attrs.iter_mut().find(|(n, _)| n == a) {
                Some(slot) => slot.1 = value.to_owned(),
                None => el.attrs.push((a.clone(), value.to_owned())),
            },
            None => el.text = value.to_owned(),
        }
    }
}

impl ReplyPaths {
    fn qualified(&self, name: &Name) -> String {
        let prefix = name
            .ns
            .as_ref()
            .and_then(|uri| self.namespaces.iter().find(|(_, u)| *u == uri));
        match prefix {
            Some((p, _)) => format!("{p}:{}", name.local),
            None => name.local.clone(),
        }
    }

    fn write_el(&self, out: &mut String, el: &El, declare: bool) {
        let name = el
            .name
            .as_ref()
            .map(|n| self.qualified(n))
            .unwrap_or_default();
        out.push('<');
        out.push_str(&name);
        if declare {
            for (prefix, uri) in &self.namespaces {
                out.push_str(&format!(" xmlns:{prefix}=\"{}\"", xml::escape(uri)));
            }
        }
        for (a, v) in &el.attrs {
            out.push_str(&format!(" {}=\"{}\"", self.qualified(a), xml::escape(v)));
        }
        if el.children.is_empty() && el.text.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        out.push_str(&xml::escape(&el.text));
        for child in &el.children {
            self.write_el(out, child, false);
        }
        out.push_str(&format!("</{name}>"));
    }

    /// The reply `response` as this dialect's paths place it.
    pub(crate) fn write(&self, response: &CheckResponse) -> String {
        let mut root = El::new(&self.root);
        match response {
            CheckResponse::NoUpdate => match &self.no_update {
                NoUpdate::DownloadsZero => {
                    if let Some(d) = &self.downloads {
                        root.set(d, "0");
                    }
                }
                NoUpdate::UpdateAbsent => {}
                NoUpdate::Empty(path) => {
                    root.at(&path.steps, false);
                }
            },
            CheckResponse::Update(offer) => {
                if let Some(d) = &self.downloads {
                    root.set(d, &offer.files.len().to_string());
                }
                root.set(&self.base_url, &offer.base_url);
                if let Some(e) = &self.external_base_url {
                    root.set(e, &offer.external_base_url);
                }
                let update = root.at(&self.update.steps, true);
                if let Some(t) = &self.update_type {
                    update.set(t, offer.update_type.as_str());
                }
                update.set(&self.version, &offer.version.to_string());
                if let (Some(t), Some(value)) = (&self.timestamp, &offer.timestamp) {
                    update.set(t, value);
                }
                if let Some(s) = &self.status {
                    update.set(s, offer.status.as_str());
                }
                match (&self.file, &self.file_name) {
                    (Some(file), Some(name)) => {
                        for f in &offer.files {
                            let el = update.at(&file.steps, true);
                            el.set(name, f.file_name.as_str());
                            if let Some(k) = &self.file_kind {
                                el.set(k, f.kind.as_str());
                            }
                            if let (Some(p), Some(size)) = (&self.file_size, f.size) {
                                el.set(p, &size.to_string());
                            }
                            if let (Some(p), Some(digest)) = (&self.file_sha256, f.sha256) {
                                el.set(p, &digest.to_string());
                            }
                        }
                    }
                    _ => {
                        for (path, kind) in [
                            (&self.image_file, FileKind::Image),
                            (&self.catalog_file, FileKind::Catalog),
                        ] {
                            let file = offer.files.iter().find(|f| f.kind == kind);
                            if let (Some(path), Some(file)) = (path, file) {
                                update.set(path, file.file_name.as_str());
                            }
                        }
                    }
                }
            }
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        self.write_el(&mut out, &root, true);
        out.push('\n');
        out
    }
}
