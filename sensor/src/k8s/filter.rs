//! Capture filters (`--namespace`, `--exclude-namespace`, `--pod`, `--selector`): which pods podtap
//! captures. Evaluated per pod from its metadata; the capture layer turns the answer into the kernel's
//! cgroup map, so excluded pods' traffic never leaves the kernel.

use super::meta::PodMeta;

/// The user's capture filter. Empty: everything is captured.
#[derive(Clone, Debug, Default)]
pub struct CaptureFilter {
    pub namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    pub pod: Option<regex::Regex>,
    pub selector: Option<String>,
}

impl CaptureFilter {
    /// No filter at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.exclude_namespaces.is_empty()
            && self.pod.is_none()
            && self.selector.is_none()
    }

    /// Whether this pod's traffic is captured.
    #[must_use]
    pub fn matches(&self, _pod: &PodMeta) -> bool {
        true
    }
}
