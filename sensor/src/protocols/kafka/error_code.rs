//! The error code of a decoded Kafka response: its top-level `error_code` when it has one and it is
//! not 0, else the first non-zero `error_code` of its nested entries (topics, partitions, groups, ...)
//! in wire order, else 0.
//!
//! One arm per response type of `kafka-protocol` 0.15.1, written from the crate's message
//! definitions: every `error_code: i16` field reachable from the response, walked in declaration
//! order (an entry's own code before its children's).

use kafka_protocol::messages::ResponseKind;

/// The error code `response` reports (see the module comment).
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn error_code(response: &ResponseKind) -> i16 {
    macro_rules! first {
        ($code:expr) => {
            if $code != 0 {
                return $code;
            }
        };
    }
    match response {
        ResponseKind::Produce(r) => {
            for x1 in &r.responses {
                for x2 in &x1.partition_responses {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::Fetch(r) => {
            first!(r.error_code);
            for x1 in &r.responses {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::ListOffsets(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::Metadata(r) => {
            for x1 in &r.topics {
                first!(x1.error_code);
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::LeaderAndIsr(r) => {
            first!(r.error_code);
            for x1 in &r.partition_errors {
                first!(x1.error_code);
            }
            for x2 in &r.topics {
                for x3 in &x2.partition_errors {
                    first!(x3.error_code);
                }
            }
        }
        ResponseKind::StopReplica(r) => {
            first!(r.error_code);
            for x1 in &r.partition_errors {
                first!(x1.error_code);
            }
        }
        ResponseKind::UpdateMetadata(r) => {
            first!(r.error_code);
        }
        ResponseKind::ControlledShutdown(r) => {
            first!(r.error_code);
        }
        ResponseKind::OffsetCommit(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::OffsetFetch(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
            for x3 in &r.groups {
                first!(x3.error_code);
                for x4 in &x3.topics {
                    for x5 in &x4.partitions {
                        first!(x5.error_code);
                    }
                }
            }
        }
        ResponseKind::FindCoordinator(r) => {
            first!(r.error_code);
            for x1 in &r.coordinators {
                first!(x1.error_code);
            }
        }
        ResponseKind::JoinGroup(r) => {
            first!(r.error_code);
        }
        ResponseKind::Heartbeat(r) => {
            first!(r.error_code);
        }
        ResponseKind::LeaveGroup(r) => {
            first!(r.error_code);
            for x1 in &r.members {
                first!(x1.error_code);
            }
        }
        ResponseKind::SyncGroup(r) => {
            first!(r.error_code);
        }
        ResponseKind::DescribeGroups(r) => {
            for x1 in &r.groups {
                first!(x1.error_code);
            }
        }
        ResponseKind::ListGroups(r) => {
            first!(r.error_code);
        }
        ResponseKind::SaslHandshake(r) => {
            first!(r.error_code);
        }
        ResponseKind::ApiVersions(r) => {
            first!(r.error_code);
        }
        ResponseKind::CreateTopics(r) => {
            for x1 in &r.topics {
                first!(x1.error_code);
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for x1 in &r.responses {
                first!(x1.error_code);
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::InitProducerId(r) => {
            first!(r.error_code);
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::AddPartitionsToTxn(r) => {
            first!(r.error_code);
        }
        ResponseKind::AddOffsetsToTxn(r) => {
            first!(r.error_code);
        }
        ResponseKind::EndTxn(r) => {
            first!(r.error_code);
        }
        ResponseKind::WriteTxnMarkers(r) => {
            for x1 in &r.markers {
                for x2 in &x1.topics {
                    for x3 in &x2.partitions {
                        first!(x3.error_code);
                    }
                }
            }
        }
        ResponseKind::TxnOffsetCommit(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeAcls(r) => {
            first!(r.error_code);
        }
        ResponseKind::CreateAcls(r) => {
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::DeleteAcls(r) => {
            for x1 in &r.filter_results {
                first!(x1.error_code);
                for x2 in &x1.matching_acls {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::AlterConfigs(r) => {
            for x1 in &r.responses {
                first!(x1.error_code);
            }
        }
        ResponseKind::AlterReplicaLogDirs(r) => {
            for x1 in &r.results {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeLogDirs(r) => {
            first!(r.error_code);
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::SaslAuthenticate(r) => {
            first!(r.error_code);
        }
        ResponseKind::CreatePartitions(r) => {
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::CreateDelegationToken(r) => {
            first!(r.error_code);
        }
        ResponseKind::RenewDelegationToken(r) => {
            first!(r.error_code);
        }
        ResponseKind::ExpireDelegationToken(r) => {
            first!(r.error_code);
        }
        ResponseKind::DescribeDelegationToken(r) => {
            first!(r.error_code);
        }
        ResponseKind::DeleteGroups(r) => {
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::ElectLeaders(r) => {
            first!(r.error_code);
            for x1 in &r.replica_election_results {
                for x2 in &x1.partition_result {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::IncrementalAlterConfigs(r) => {
            for x1 in &r.responses {
                first!(x1.error_code);
            }
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            first!(r.error_code);
            for x1 in &r.responses {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::ListPartitionReassignments(r) => {
            first!(r.error_code);
        }
        ResponseKind::OffsetDelete(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeClientQuotas(r) => {
            first!(r.error_code);
        }
        ResponseKind::AlterClientQuotas(r) => {
            for x1 in &r.entries {
                first!(x1.error_code);
            }
        }
        ResponseKind::DescribeUserScramCredentials(r) => {
            first!(r.error_code);
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::Vote(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::BeginQuorumEpoch(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::EndQuorumEpoch(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeQuorum(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::AlterPartition(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::UpdateFeatures(r) => {
            first!(r.error_code);
            for x1 in &r.results {
                first!(x1.error_code);
            }
        }
        ResponseKind::Envelope(r) => {
            first!(r.error_code);
        }
        ResponseKind::FetchSnapshot(r) => {
            first!(r.error_code);
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::DescribeCluster(r) => {
            first!(r.error_code);
        }
        ResponseKind::DescribeProducers(r) => {
            for x1 in &r.topics {
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::BrokerRegistration(r) => {
            first!(r.error_code);
        }
        ResponseKind::BrokerHeartbeat(r) => {
            first!(r.error_code);
        }
        ResponseKind::UnregisterBroker(r) => {
            first!(r.error_code);
        }
        ResponseKind::DescribeTransactions(r) => {
            for x1 in &r.transaction_states {
                first!(x1.error_code);
            }
        }
        ResponseKind::ListTransactions(r) => {
            first!(r.error_code);
        }
        ResponseKind::AllocateProducerIds(r) => {
            first!(r.error_code);
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => {
            first!(r.error_code);
        }
        ResponseKind::ConsumerGroupDescribe(r) => {
            for x1 in &r.groups {
                first!(x1.error_code);
            }
        }
        ResponseKind::ControllerRegistration(r) => {
            first!(r.error_code);
        }
        ResponseKind::GetTelemetrySubscriptions(r) => {
            first!(r.error_code);
        }
        ResponseKind::PushTelemetry(r) => {
            first!(r.error_code);
        }
        ResponseKind::AssignReplicasToDirs(r) => {
            first!(r.error_code);
            for x1 in &r.directories {
                for x2 in &x1.topics {
                    for x3 in &x2.partitions {
                        first!(x3.error_code);
                    }
                }
            }
        }
        ResponseKind::ListClientMetricsResources(r) => {
            first!(r.error_code);
        }
        ResponseKind::DescribeTopicPartitions(r) => {
            for x1 in &r.topics {
                first!(x1.error_code);
                for x2 in &x1.partitions {
                    first!(x2.error_code);
                }
            }
        }
        ResponseKind::AddRaftVoter(r) => {
            first!(r.error_code);
        }
        ResponseKind::RemoveRaftVoter(r) => {
            first!(r.error_code);
        }
        ResponseKind::UpdateRaftVoter(r) => {
            first!(r.error_code);
        }
        // Variants added by a later crate release (the crate is pinned, so none today).
        _ => {}
    }
    0
}
