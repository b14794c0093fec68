//! Wire types of the Cloud TPU v2 REST API, in its JSON (camelCase) shape.
//!
//! Only the fields sglprof reads or writes are modelled; unknown fields in
//! answers are ignored so that new API fields do not break us.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a node is billed and whether Google may take it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provisioning {
    OnDemand,
    /// `schedulingConfig.spot`: cheap, may be preempted at any time.
    Spot,
    /// `schedulingConfig.preemptible`: the legacy form of spot, at most 24 h.
    Preemptible,
}

impl Provisioning {
    /// `on-demand`, `spot` or `preemptible`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provisioning::OnDemand => "on-demand",
            Provisioning::Spot => "spot",
            Provisioning::Preemptible => "preemptible",
        }
    }

    pub fn parse(text: &str) -> Option<Provisioning> {
        match text {
            "on-demand" | "ondemand" | "standard" => Some(Provisioning::OnDemand),
            "spot" => Some(Provisioning::Spot),
            "preemptible" => Some(Provisioning::Preemptible),
            _ => None,
        }
    }

    pub fn scheduling_config(self) -> Option<SchedulingConfig> {
        match self {
            Provisioning::OnDemand => None,
            Provisioning::Spot => Some(SchedulingConfig {
                spot: true,
                ..SchedulingConfig::default()
            }),
            Provisioning::Preemptible => Some(SchedulingConfig {
                preemptible: true,
                ..SchedulingConfig::default()
            }),
        }
    }
}

/// `Node.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeState {
    StateUnspecified,
    Creating,
    Ready,
    Restarting,
    Reimaging,
    Deleting,
    Repairing,
    Stopped,
    Stopping,
    Starting,
    Preempted,
    Terminated,
    Hiding,
    Hidden,
    Unhiding,
    #[serde(other)]
    Unknown,
}

impl NodeState {
    /// States a node never leaves on its own towards READY.
    pub fn is_dead_end(self) -> bool {
        matches!(
            self,
            NodeState::Preempted
                | NodeState::Terminated
                | NodeState::Deleting
                | NodeState::Stopped
                | NodeState::Hidden
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// `projects/{p}/locations/{zone}/nodes/{id}`; output only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub accelerator_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<NetworkConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_config: Option<SchedulingConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_endpoints: Vec<NetworkEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_resource: Option<String>,
}

impl Node {
    /// The last path segment of `name`.
    pub fn id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or("")
    }

    /// Whether sglprof created this node (label `created-by=sglprof`).
    pub fn is_ours(&self) -> bool {
        let (key, value) = crate::CREATED_BY_LABEL;
        self.labels.get(key).map(String::as_str) == Some(value)
    }

    /// The run id label, when sglprof created the node.
    pub fn run_label(&self) -> Option<&str> {
        self.labels.get(crate::RUN_LABEL).map(String::as_str)
    }

    /// The internal IP of worker 0, if the node has one yet.
    pub fn internal_ip(&self) -> Option<&str> {
        self.network_endpoints.first()?.ip_address.as_deref()
    }

    /// The external IP of worker 0, if it has one.
    pub fn external_ip(&self) -> Option<&str> {
        self.network_endpoints
            .first()?
            .access_config
            .as_ref()?
            .external_ip
            .as_deref()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    #[serde(default)]
    pub enable_external_ips: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingConfig {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preemptible: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reserved: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spot: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    pub email: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_config: Option<AccessConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
}

/// `GET .../nodes` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListNodesResponse {
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// A long-running operation (`google.longrunning.Operation`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

/// `google.rpc.Status`, as found in `Operation.error`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

/// The error body of a failed HTTP call:
/// `{"error":{"code","message","status","details"}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    /// `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `ALREADY_EXISTS`, ...
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

/// A queued resource: a request for capacity that Google fills when it can.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedResource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpu: Option<QueuedTpu>,
    /// Present (as `{}`) for the spot tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guaranteed: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queueing_policy: Option<QueueingPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<QueuedResourceStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedTpu {
    #[serde(default)]
    pub node_spec: Vec<QueuedNodeSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedNodeSpec {
    /// `projects/{p}/locations/{zone}`.
    pub parent: String,
    pub node_id: String,
    pub node: Node,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueingPolicy {
    /// Seconds with an `s` suffix, as protobuf durations are in JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_duration: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedResourceStatus {
    /// CREATING, ACCEPTED, PROVISIONING, FAILED, DELETING, ACTIVE,
    /// SUSPENDING, SUSPENDED, WAITING_FOR_RESOURCES.
    #[serde(default)]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_initiator: Option<String>,
    #[serde(flatten)]
    pub state_data: BTreeMap<String, serde_json::Value>,
}
