"""Decode Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into Kubernetes JSON dicts.

kubectl 1.32 and 1.33 POST the objects built by `kubectl create deployment|service|namespace|configmap|secret|...`
as protobuf.  The body is the 4-byte magic `k8s\\0` followed by a `runtime.Unknown` message::

    Unknown { 1: TypeMeta{1: apiVersion, 2: kind}, 2: raw (the object's own message), 3: contentEncoding,
              4: contentType }

`decode()` reads that envelope and turns `raw` into the dict the same request would have carried as JSON, so the
rest of the API server never sees protobuf.  It is a generic protobuf wire-format reader driven by `SCHEMA` below:
for every message reachable from the supported kinds, field number → JSON name, type and Go semantics.

How Go's two encoders differ, and how the JSON is rebuilt (facts from the Go types and gogo-protobuf):
- gogo-protobuf writes every non-pointer field, zero or not (`nodePort: 0`, `generateName: ""`); Go's JSON
  encoder drops zero scalars only on `omitempty` fields.  So: a zero scalar is dropped on `omitempty` fields,
  kept on others (`port: 0`), and a pointer field (`replicas`) is emitted exactly when it was sent.
- Non-pointer structs are always emitted by Go's JSON encoder (`"strategy": {}`, `"resources": {}`), even
  when absent on the wire; pointer structs only when sent.
- Empty slices and maps are dropped on `omitempty` fields and are `null` on the others (Go's nil slice).
- Special encodings: `Time{seconds}` → RFC 3339 seconds in UTC (an empty Time is the zero time → `null`),
  `MicroTime` → RFC 3339 with microseconds, `IntOrString{type,intVal,strVal}` → int or str,
  `Quantity{string}` → str, `RawExtension{raw}` / `FieldsV1{raw}` → the embedded JSON, `[]byte` → base64.
- Unknown field numbers are skipped (newer clients may send fields this table does not know).

The `SCHEMA` table was written from the struct tags of upstream `types.go` (kubernetes/api core/v1, apps/v1,
discovery/v1; kubernetes/apimachinery pkg/apis/meta/v1), which carry both the protobuf tag
(`protobuf:"varint,1,opt,name=replicas"`) and the JSON tag (`json:"replicas,omitempty"`).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MAGIC = b"k8s\x00"

# The object kinds decode() accepts: (apiVersion, kind) of the envelope → SCHEMA message name.
KINDS: dict[tuple[str, str], str] = {
    **{("v1", kind): f"core.{kind}" for kind in (
        "Namespace", "Service", "Pod", "Endpoints", "Event", "Node", "ConfigMap", "Secret", "ServiceAccount",
        "PodTemplate", "ResourceQuota", "LimitRange")},
    **{("apps/v1", kind): f"apps.{kind}" for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")},
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication.SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "authorization.SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "authorization.SelfSubjectRulesReview",
    ("batch/v1", "Job"): "batch.Job",
    ("batch/v1", "CronJob"): "batch.CronJob",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.EndpointSlice",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.ClusterRoleBinding",
    ("v1", "Status"): "meta.Status",
    ("meta.k8s.io/v1", "Status"): "meta.Status",
}

# Nesting deeper than this is refused (the schema itself is far shallower; this bounds hostile input).
MAX_DEPTH = 64


class ProtobufError(ValueError):
    """A body that is not a decodable Kubernetes protobuf object; the message suits a 400 Status."""


# SCHEMA: one paragraph per message, "<message>:" then "<number> <jsonName> <type> [flags];" entries.
#   type   s string · b bool · i int32 · l int64 · y bytes (base64 in JSON) · d double · f float
#          · a message name (meta.Time, intstr.IntOrString, resource.Quantity … are special, see _SPECIAL)
#          prefixed "r:" for a repeated field, "ms:" for a map with string keys (map<string, type>).
#   flags  o: the JSON tag has omitempty · p: the Go field is a pointer (emitted exactly when present).
#   jsonName "*" is an embedded struct whose fields JSON inlines into the parent (EphemeralContainerCommon).
SCHEMA = """
apps.DaemonSet: 1 metadata meta.ObjectMeta o; 2 spec apps.DaemonSetSpec o; 3 status apps.DaemonSetStatus o;
apps.DaemonSetCondition: 1 type s; 2 status s; 3 lastTransitionTime meta.Time o; 4 reason s o; 5 message s o;
apps.DaemonSetSpec: 1 selector meta.LabelSelector p; 2 template core.PodTemplateSpec;
    3 updateStrategy apps.DaemonSetUpdateStrategy o; 4 minReadySeconds i o; 6 revisionHistoryLimit i op;
apps.DaemonSetStatus: 1 currentNumberScheduled i; 2 numberMisscheduled i; 3 desiredNumberScheduled i;
    4 numberReady i; 5 observedGeneration l o; 6 updatedNumberScheduled i o; 7 numberAvailable i o;
    8 numberUnavailable i o; 9 collisionCount i op; 10 conditions r:apps.DaemonSetCondition o;
apps.DaemonSetUpdateStrategy: 1 type s o; 2 rollingUpdate apps.RollingUpdateDaemonSet op;
apps.Deployment: 1 metadata meta.ObjectMeta o; 2 spec apps.DeploymentSpec o; 3 status apps.DeploymentStatus o;
apps.DeploymentCondition: 1 type s; 2 status s; 6 lastUpdateTime meta.Time o; 7 lastTransitionTime meta.Time o;
    4 reason s o; 5 message s o;
apps.DeploymentSpec: 1 replicas i op; 2 selector meta.LabelSelector p; 3 template core.PodTemplateSpec;
    4 strategy apps.DeploymentStrategy o; 5 minReadySeconds i o; 6 revisionHistoryLimit i op; 7 paused b o;
    9 progressDeadlineSeconds i op;
apps.DeploymentStatus: 1 observedGeneration l o; 2 replicas i o; 3 updatedReplicas i o; 7 readyReplicas i o;
    4 availableReplicas i o; 5 unavailableReplicas i o; 9 terminatingReplicas i op;
    6 conditions r:apps.DeploymentCondition o; 8 collisionCount i op;
apps.DeploymentStrategy: 1 type s o; 2 rollingUpdate apps.RollingUpdateDeployment op;
apps.ReplicaSet: 1 metadata meta.ObjectMeta o; 2 spec apps.ReplicaSetSpec o; 3 status apps.ReplicaSetStatus o;
apps.ReplicaSetCondition: 1 type s; 2 status s; 3 lastTransitionTime meta.Time o; 4 reason s o; 5 message s o;
apps.ReplicaSetSpec: 1 replicas i op; 4 minReadySeconds i o; 2 selector meta.LabelSelector p;
    3 template core.PodTemplateSpec o;
apps.ReplicaSetStatus: 1 replicas i; 2 fullyLabeledReplicas i o; 4 readyReplicas i o; 5 availableReplicas i o;
    7 terminatingReplicas i op; 3 observedGeneration l o; 6 conditions r:apps.ReplicaSetCondition o;
apps.RollingUpdateDaemonSet: 1 maxUnavailable intstr.IntOrString op; 2 maxSurge intstr.IntOrString op;
apps.RollingUpdateDeployment: 1 maxUnavailable intstr.IntOrString op; 2 maxSurge intstr.IntOrString op;
apps.RollingUpdateStatefulSetStrategy: 1 partition i op; 2 maxUnavailable intstr.IntOrString op;
apps.StatefulSet: 1 metadata meta.ObjectMeta o; 2 spec apps.StatefulSetSpec o;
    3 status apps.StatefulSetStatus o;
apps.StatefulSetCondition: 1 type s; 2 status s; 3 lastTransitionTime meta.Time o; 4 reason s o; 5 message s o;
apps.StatefulSetOrdinals: 1 start i;
apps.StatefulSetPersistentVolumeClaimRetentionPolicy: 1 whenDeleted s o; 2 whenScaled s o;
apps.StatefulSetSpec: 1 replicas i op; 2 selector meta.LabelSelector p; 3 template core.PodTemplateSpec;
    4 volumeClaimTemplates r:core.PersistentVolumeClaim o; 5 serviceName s; 6 podManagementPolicy s o;
    7 updateStrategy apps.StatefulSetUpdateStrategy o; 8 revisionHistoryLimit i op; 9 minReadySeconds i o;
    10 persistentVolumeClaimRetentionPolicy apps.StatefulSetPersistentVolumeClaimRetentionPolicy op;
    11 ordinals apps.StatefulSetOrdinals op;
apps.StatefulSetStatus: 1 observedGeneration l o; 2 replicas i; 3 readyReplicas i o; 4 currentReplicas i o;
    5 updatedReplicas i o; 6 currentRevision s o; 7 updateRevision s o; 9 collisionCount i op;
    10 conditions r:apps.StatefulSetCondition o; 11 availableReplicas i;
apps.StatefulSetUpdateStrategy: 1 type s o; 2 rollingUpdate apps.RollingUpdateStatefulSetStrategy op;
core.AWSElasticBlockStoreVolumeSource: 1 volumeID s; 2 fsType s o; 3 partition i o; 4 readOnly b o;
core.Affinity: 1 nodeAffinity core.NodeAffinity op; 2 podAffinity core.PodAffinity op;
    3 podAntiAffinity core.PodAntiAffinity op;
core.AppArmorProfile: 1 type s; 2 localhostProfile s op;
core.AttachedVolume: 1 name s; 2 devicePath s;
core.AzureDiskVolumeSource: 1 diskName s; 2 diskURI s; 3 cachingMode s op; 4 fsType s op; 5 readOnly b op;
    6 kind s op;
core.AzureFileVolumeSource: 1 secretName s; 2 shareName s; 3 readOnly b o;
core.CSIVolumeSource: 1 driver s; 2 readOnly b op; 3 fsType s op; 4 volumeAttributes ms:s o;
    5 nodePublishSecretRef core.LocalObjectReference op;
core.Capabilities: 1 add r:s o; 2 drop r:s o;
core.CephFSVolumeSource: 1 monitors r:s; 2 path s o; 3 user s o; 4 secretFile s o;
    5 secretRef core.LocalObjectReference op; 6 readOnly b o;
authentication.SelfSubjectReview: 1 metadata meta.ObjectMeta o; 2 status authentication.SelfSubjectReviewStatus o;
authentication.SelfSubjectReviewStatus: 1 userInfo authentication.UserInfo o;
authentication.UserInfo: 1 username s o; 2 uid s o; 3 groups r:s o;
authorization.FieldSelectorAttributes: 1 rawSelector s o; 2 requirements r:meta.FieldSelectorRequirement o;
authorization.LabelSelectorAttributes: 1 rawSelector s o; 2 requirements r:meta.LabelSelectorRequirement o;
authorization.NonResourceAttributes: 1 path s o; 2 verb s o;
authorization.NonResourceRule: 1 verbs r:s; 2 nonResourceURLs r:s o;
authorization.ResourceAttributes: 1 namespace s o; 2 verb s o; 3 group s o; 4 version s o; 5 resource s o;
    6 subresource s o; 7 name s o; 8 fieldSelector authorization.FieldSelectorAttributes op;
    9 labelSelector authorization.LabelSelectorAttributes op;
authorization.ResourceRule: 1 verbs r:s; 2 apiGroups r:s o; 3 resources r:s o; 4 resourceNames r:s o;
authorization.SelfSubjectAccessReview: 1 metadata meta.ObjectMeta o;
    2 spec authorization.SelfSubjectAccessReviewSpec; 3 status authorization.SubjectAccessReviewStatus o;
authorization.SelfSubjectAccessReviewSpec: 1 resourceAttributes authorization.ResourceAttributes op;
    2 nonResourceAttributes authorization.NonResourceAttributes op;
authorization.SelfSubjectRulesReview: 1 metadata meta.ObjectMeta o; 2 spec authorization.SelfSubjectRulesReviewSpec;
    3 status authorization.SubjectRulesReviewStatus o;
authorization.SelfSubjectRulesReviewSpec: 1 namespace s o;
authorization.SubjectAccessReviewStatus: 1 allowed b; 4 denied b o; 2 reason s o; 3 evaluationError s o;
authorization.SubjectRulesReviewStatus: 1 resourceRules r:authorization.ResourceRule;
    2 nonResourceRules r:authorization.NonResourceRule; 3 incomplete b; 4 evaluationError s o;
batch.CronJob: 1 metadata meta.ObjectMeta o; 2 spec batch.CronJobSpec o; 3 status batch.CronJobStatus o;
batch.CronJobSpec: 1 schedule s; 8 timeZone s op; 2 startingDeadlineSeconds l op; 3 concurrencyPolicy s o;
    4 suspend b op; 5 jobTemplate batch.JobTemplateSpec; 6 successfulJobsHistoryLimit i op;
    7 failedJobsHistoryLimit i op;
batch.CronJobStatus: 1 active r:core.ObjectReference o; 4 lastScheduleTime meta.Time op;
    5 lastSuccessfulTime meta.Time op;
batch.Job: 1 metadata meta.ObjectMeta o; 2 spec batch.JobSpec o; 3 status batch.JobStatus o;
batch.JobCondition: 1 type s; 2 status s; 3 lastProbeTime meta.Time o; 4 lastTransitionTime meta.Time o;
    5 reason s o; 6 message s o;
batch.JobSpec: 1 parallelism i op; 2 completions i op; 3 activeDeadlineSeconds l op;
    11 podFailurePolicy batch.PodFailurePolicy op; 16 successPolicy batch.SuccessPolicy op; 7 backoffLimit i op;
    12 backoffLimitPerIndex i op; 13 maxFailedIndexes i op; 4 selector meta.LabelSelector op;
    5 manualSelector b op; 6 template core.PodTemplateSpec; 8 ttlSecondsAfterFinished i op;
    9 completionMode s op; 10 suspend b op; 14 podReplacementPolicy s op; 15 managedBy s op;
batch.JobStatus: 1 conditions r:batch.JobCondition o; 2 startTime meta.Time op; 3 completionTime meta.Time op;
    4 active i o; 5 succeeded i o; 6 failed i o; 11 terminating i op; 7 completedIndexes s o;
    10 failedIndexes s op; 8 uncountedTerminatedPods batch.UncountedTerminatedPods op; 9 ready i op;
batch.JobTemplateSpec: 1 metadata meta.ObjectMeta o; 2 spec batch.JobSpec o;
batch.PodFailurePolicy: 1 rules r:batch.PodFailurePolicyRule;
batch.PodFailurePolicyOnExitCodesRequirement: 1 containerName s op; 2 operator s; 3 values r:i;
batch.PodFailurePolicyOnPodConditionsPattern: 1 type s; 2 status s;
batch.PodFailurePolicyRule: 1 action s; 2 onExitCodes batch.PodFailurePolicyOnExitCodesRequirement op;
    3 onPodConditions r:batch.PodFailurePolicyOnPodConditionsPattern o;
batch.SuccessPolicy: 1 rules r:batch.SuccessPolicyRule;
batch.SuccessPolicyRule: 1 succeededIndexes s op; 2 succeededCount i op;
batch.UncountedTerminatedPods: 1 succeeded r:s o; 2 failed r:s o;
core.CinderVolumeSource: 1 volumeID s; 2 fsType s o; 3 readOnly b o; 4 secretRef core.LocalObjectReference op;
core.ClientIPConfig: 1 timeoutSeconds i op;
core.ClusterTrustBundleProjection: 1 name s op; 2 signerName s op; 3 labelSelector meta.LabelSelector op;
    5 optional b op; 4 path s; 6 user l op;
core.ConfigMap: 1 metadata meta.ObjectMeta o; 4 immutable b op; 2 data ms:s o; 3 binaryData ms:y o;
core.ConfigMapEnvSource: 1 * core.LocalObjectReference; 2 optional b op;
core.ConfigMapKeySelector: 1 * core.LocalObjectReference; 2 key s; 3 optional b op;
core.ConfigMapNodeConfigSource: 1 namespace s; 2 name s; 3 uid s o; 4 resourceVersion s o; 5 kubeletConfigKey s;
core.ConfigMapProjection: 1 * core.LocalObjectReference; 2 items r:core.KeyToPath o; 4 optional b op;
core.ConfigMapVolumeSource: 1 * core.LocalObjectReference; 2 items r:core.KeyToPath o; 3 defaultMode i op;
    4 optional b op; 5 defaultUser l op;
core.Container: 1 name s; 2 image s o; 3 command r:s o; 4 args r:s o; 5 workingDir s o;
    6 ports r:core.ContainerPort o; 19 envFrom r:core.EnvFromSource o; 7 env r:core.EnvVar o;
    8 resources core.ResourceRequirements o; 23 resizePolicy r:core.ContainerResizePolicy o;
    24 restartPolicy s op; 25 restartPolicyRules r:core.ContainerRestartRule o;
    9 volumeMounts r:core.VolumeMount o; 21 volumeDevices r:core.VolumeDevice o; 10 livenessProbe core.Probe op;
    11 readinessProbe core.Probe op; 22 startupProbe core.Probe op; 12 lifecycle core.Lifecycle op;
    13 terminationMessagePath s o; 20 terminationMessagePolicy s o; 14 imagePullPolicy s o;
    15 securityContext core.SecurityContext op; 16 stdin b o; 17 stdinOnce b o; 18 tty b o;
core.ContainerExtendedResourceRequest: 1 containerName s; 2 resourceName s; 3 requestName s;
core.ContainerImage: 1 names r:s; 2 sizeBytes l o;
core.ContainerPort: 1 name s o; 2 hostPort i o; 3 containerPort i; 4 protocol s o; 5 hostIP s o;
core.ContainerResizePolicy: 1 resourceName s; 2 restartPolicy s;
core.ContainerRestartRule: 1 action s o; 2 exitCodes core.ContainerRestartRuleOnExitCodes op;
core.ContainerRestartRuleOnExitCodes: 1 operator s o; 2 values r:i o;
core.ContainerState: 1 waiting core.ContainerStateWaiting op; 2 running core.ContainerStateRunning op;
    3 terminated core.ContainerStateTerminated op;
core.ContainerStateRunning: 1 startedAt meta.Time o;
core.ContainerStateTerminated: 1 exitCode i; 2 signal i o; 3 reason s o; 4 message s o; 5 startedAt meta.Time o;
    6 finishedAt meta.Time o; 7 containerID s o;
core.ContainerStateWaiting: 1 reason s o; 2 message s o;
core.ContainerStatus: 1 name s; 2 state core.ContainerState o; 3 lastState core.ContainerState o; 4 ready b;
    5 restartCount i; 6 image s; 7 imageID s; 8 containerID s o; 9 started b op;
    10 allocatedResources ms:resource.Quantity o; 11 resources core.ResourceRequirements op;
    12 volumeMounts r:core.VolumeMountStatus o; 13 user core.ContainerUser op;
    14 allocatedResourcesStatus r:core.ResourceStatus o; 15 stopSignal s op;
core.ContainerUser: 1 linux core.LinuxContainerUser op;
core.DaemonEndpoint: 1 Port i;
core.DownwardAPIProjection: 1 items r:core.DownwardAPIVolumeFile o;
core.DownwardAPIVolumeFile: 1 path s; 2 fieldRef core.ObjectFieldSelector op;
    3 resourceFieldRef core.ResourceFieldSelector op; 4 mode i op; 5 user l op;
core.DownwardAPIVolumeSource: 1 items r:core.DownwardAPIVolumeFile o; 2 defaultMode i op; 3 defaultUser l op;
core.EmptyDirVolumeSource: 1 medium s o; 2 sizeLimit resource.Quantity op; 3 mode i op;
core.EndpointAddress: 1 ip s; 3 hostname s o; 4 nodeName s op; 2 targetRef core.ObjectReference op;
core.EndpointPort: 1 name s o; 2 port i; 3 protocol s o; 4 appProtocol s op;
core.EndpointSubset: 1 addresses r:core.EndpointAddress o; 2 notReadyAddresses r:core.EndpointAddress o;
    3 ports r:core.EndpointPort o;
core.Endpoints: 1 metadata meta.ObjectMeta o; 2 subsets r:core.EndpointSubset o;
core.EnvFromSource: 1 prefix s o; 2 configMapRef core.ConfigMapEnvSource op;
    3 secretRef core.SecretEnvSource op;
core.EnvVar: 1 name s; 2 value s o; 3 valueFrom core.EnvVarSource op;
core.EnvVarSource: 1 fieldRef core.ObjectFieldSelector op; 2 resourceFieldRef core.ResourceFieldSelector op;
    3 configMapKeyRef core.ConfigMapKeySelector op; 4 secretKeyRef core.SecretKeySelector op;
    5 fileKeyRef core.FileKeySelector op;
core.EphemeralContainer: 1 * core.EphemeralContainerCommon; 2 targetContainerName s o;
core.EphemeralContainerCommon: 1 name s; 2 image s o; 3 command r:s o; 4 args r:s o; 5 workingDir s o;
    6 ports r:core.ContainerPort o; 19 envFrom r:core.EnvFromSource o; 7 env r:core.EnvVar o;
    8 resources core.ResourceRequirements o; 23 resizePolicy r:core.ContainerResizePolicy o;
    24 restartPolicy s op; 25 restartPolicyRules r:core.ContainerRestartRule o;
    9 volumeMounts r:core.VolumeMount o; 21 volumeDevices r:core.VolumeDevice o; 10 livenessProbe core.Probe op;
    11 readinessProbe core.Probe op; 22 startupProbe core.Probe op; 12 lifecycle core.Lifecycle op;
    13 terminationMessagePath s o; 20 terminationMessagePolicy s o; 14 imagePullPolicy s o;
    15 securityContext core.SecurityContext op; 16 stdin b o; 17 stdinOnce b o; 18 tty b o;
core.EphemeralVolumeSource: 1 volumeClaimTemplate core.PersistentVolumeClaimTemplate op;
core.Event: 1 metadata meta.ObjectMeta; 2 involvedObject core.ObjectReference; 3 reason s o; 4 message s o;
    5 source core.EventSource o; 6 firstTimestamp meta.Time o; 7 lastTimestamp meta.Time o; 8 count i o;
    9 type s o; 10 eventTime meta.MicroTime o; 11 series core.EventSeries op; 12 action s o;
    13 related core.ObjectReference op; 14 reportingComponent s; 15 reportingInstance s;
core.EventSeries: 1 count i o; 2 lastObservedTime meta.MicroTime o;
core.EventSource: 1 component s o; 2 host s o;
core.EvictionResponder: 1 name s; 2 priority i p;
core.ExecAction: 1 command r:s o;
core.FCVolumeSource: 1 targetWWNs r:s o; 2 lun i op; 3 fsType s o; 4 readOnly b o; 5 wwids r:s o;
core.FileKeySelector: 1 volumeName s; 2 path s; 3 key s; 4 optional b op;
core.FlexVolumeSource: 1 driver s; 2 fsType s o; 3 secretRef core.LocalObjectReference op; 4 readOnly b o;
    5 options ms:s o;
core.FlockerVolumeSource: 1 datasetName s o; 2 datasetUUID s o;
core.GCEPersistentDiskVolumeSource: 1 pdName s; 2 fsType s o; 3 partition i o; 4 readOnly b o;
core.GRPCAction: 1 port i; 2 service s p; 3 mode s op;
core.GitRepoVolumeSource: 1 repository s; 2 revision s o; 3 directory s o;
core.GlusterfsVolumeSource: 1 endpoints s; 2 path s; 3 readOnly b o;
core.HTTPGetAction: 1 path s o; 2 port intstr.IntOrString; 3 host s o; 4 scheme s o;
    5 httpHeaders r:core.HTTPHeader o; 6 protocol s op;
core.HTTPHeader: 1 name s; 2 value s;
core.HostAlias: 1 ip s; 2 hostnames r:s o;
core.HostIP: 1 ip s;
core.HostPathVolumeSource: 1 path s; 2 type s op;
core.ISCSIVolumeSource: 1 targetPortal s; 2 iqn s; 3 lun i; 4 iscsiInterface s o; 5 fsType s o; 6 readOnly b o;
    7 portals r:s o; 8 chapAuthDiscovery b o; 11 chapAuthSession b o; 10 secretRef core.LocalObjectReference op;
    12 initiatorName s op;
core.ImageVolumeSource: 1 reference s o; 2 pullPolicy s o;
core.ImageVolumeStatus: 1 imageRef s o;
core.KeyToPath: 1 key s; 2 path s; 3 mode i op; 4 user l op;
core.Lifecycle: 1 postStart core.LifecycleHandler op; 2 preStop core.LifecycleHandler op; 3 stopSignal s op;
core.LifecycleHandler: 1 exec core.ExecAction op; 2 httpGet core.HTTPGetAction op;
    3 tcpSocket core.TCPSocketAction op; 4 sleep core.SleepAction op;
core.LimitRange: 1 metadata meta.ObjectMeta o; 2 spec core.LimitRangeSpec o;
core.LimitRangeItem: 1 type s; 2 max ms:resource.Quantity o; 3 min ms:resource.Quantity o;
    4 default ms:resource.Quantity o; 5 defaultRequest ms:resource.Quantity o;
    6 maxLimitRequestRatio ms:resource.Quantity o;
core.LimitRangeSpec: 1 limits r:core.LimitRangeItem;
core.LinuxContainerUser: 1 uid l; 2 gid l; 3 supplementalGroups r:l o;
core.LoadBalancerIngress: 1 ip s o; 2 hostname s o; 3 ipMode s op; 4 ports r:core.PortStatus o;
core.LoadBalancerStatus: 1 ingress r:core.LoadBalancerIngress o;
core.LocalObjectReference: 1 name s o;
core.ModifyVolumeStatus: 1 targetVolumeAttributesClassName s o; 2 status s;
core.NFSVolumeSource: 1 server s; 2 path s; 3 readOnly b o;
core.Namespace: 1 metadata meta.ObjectMeta o; 2 spec core.NamespaceSpec o; 3 status core.NamespaceStatus o;
core.NamespaceCondition: 1 type s; 2 status s; 4 lastTransitionTime meta.Time o; 5 reason s o; 6 message s o;
core.NamespaceSpec: 1 finalizers r:s o;
core.NamespaceStatus: 1 phase s o; 2 conditions r:core.NamespaceCondition o;
core.Node: 1 metadata meta.ObjectMeta o; 2 spec core.NodeSpec o; 3 status core.NodeStatus o;
core.NodeAddress: 1 type s; 2 address s;
core.NodeAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution core.NodeSelector op;
    2 preferredDuringSchedulingIgnoredDuringExecution r:core.PreferredSchedulingTerm o;
core.NodeAllocatableMappedResources: 1 name s; 2 quantity resource.Quantity p;
core.NodeAllocatableOverheadResources: 1 name s; 2 perPod resource.Quantity op;
    3 perContainer resource.Quantity op;
core.NodeAllocatableResourceClaimStatus: 1 resourceClaimName s; 2 containers r:s o;
    4 mapping r:core.NodeAllocatableMappedResources o; 5 overhead r:core.NodeAllocatableOverheadResources o;
core.NodeCondition: 1 type s; 2 status s; 3 lastHeartbeatTime meta.Time o; 4 lastTransitionTime meta.Time o;
    5 reason s o; 6 message s o;
core.NodeConfigSource: 2 configMap core.ConfigMapNodeConfigSource op;
core.NodeConfigStatus: 1 assigned core.NodeConfigSource op; 2 active core.NodeConfigSource op;
    3 lastKnownGood core.NodeConfigSource op; 4 error s o;
core.NodeDaemonEndpoints: 1 kubeletEndpoint core.DaemonEndpoint o;
core.NodeFeatures: 1 supplementalGroupsPolicy b op;
core.NodePodPreemptionPolicy: 1 disableResizePreemption r:s o;
core.NodeRuntimeHandler: 1 name s; 2 features core.NodeRuntimeHandlerFeatures op;
core.NodeRuntimeHandlerFeatures: 1 recursiveReadOnlyMounts b op; 2 userNamespaces b op;
core.NodeSelector: 1 nodeSelectorTerms r:core.NodeSelectorTerm;
core.NodeSelectorRequirement: 1 key s; 2 operator s; 3 values r:s o;
core.NodeSelectorTerm: 1 matchExpressions r:core.NodeSelectorRequirement o;
    2 matchFields r:core.NodeSelectorRequirement o;
core.NodeSpec: 1 podCIDR s o; 7 podCIDRs r:s o; 3 providerID s o; 4 unschedulable b o; 5 taints r:core.Taint o;
    6 configSource core.NodeConfigSource op; 2 externalID s o;
    8 podPreemptionPolicy core.NodePodPreemptionPolicy op;
core.NodeStatus: 1 capacity ms:resource.Quantity o; 2 allocatable ms:resource.Quantity o; 3 phase s o;
    4 conditions r:core.NodeCondition o; 5 addresses r:core.NodeAddress o;
    6 daemonEndpoints core.NodeDaemonEndpoints o; 7 nodeInfo core.NodeSystemInfo o;
    8 images r:core.ContainerImage o; 9 volumesInUse r:s o; 10 volumesAttached r:core.AttachedVolume o;
    11 config core.NodeConfigStatus op; 12 runtimeHandlers r:core.NodeRuntimeHandler o;
    13 features core.NodeFeatures op; 14 declaredFeatures r:s o;
core.NodeSwapStatus: 1 capacity l op;
core.NodeSystemInfo: 1 machineID s; 2 systemUUID s; 3 bootID s; 4 kernelVersion s; 5 osImage s;
    6 containerRuntimeVersion s; 7 kubeletVersion s; 8 kubeProxyVersion s; 9 operatingSystem s;
    10 architecture s; 11 swap core.NodeSwapStatus op;
core.ObjectFieldSelector: 1 apiVersion s o; 2 fieldPath s;
core.ObjectReference: 1 kind s o; 2 namespace s o; 3 name s o; 4 uid s o; 5 apiVersion s o;
    6 resourceVersion s o; 7 fieldPath s o;
core.PersistentVolumeClaim: 1 metadata meta.ObjectMeta o; 2 spec core.PersistentVolumeClaimSpec o;
    3 status core.PersistentVolumeClaimStatus o;
core.PersistentVolumeClaimCondition: 1 type s; 2 status s; 3 lastProbeTime meta.Time o;
    4 lastTransitionTime meta.Time o; 5 reason s o; 6 message s o;
core.PersistentVolumeClaimSpec: 1 accessModes r:s o; 4 selector meta.LabelSelector op;
    2 resources core.VolumeResourceRequirements o; 3 volumeName s o; 5 storageClassName s op; 6 volumeMode s op;
    7 dataSource core.TypedLocalObjectReference op; 8 dataSourceRef core.TypedObjectReference op;
    9 volumeAttributesClassName s op;
core.PersistentVolumeClaimStatus: 1 phase s o; 2 accessModes r:s o; 3 capacity ms:resource.Quantity o;
    4 conditions r:core.PersistentVolumeClaimCondition o; 5 allocatedResources ms:resource.Quantity o;
    7 allocatedResourceStatuses ms:s o; 8 currentVolumeAttributesClassName s op;
    9 modifyVolumeStatus core.ModifyVolumeStatus op; 10 healthStatus core.VolumeHealthStatus op;
core.PersistentVolumeClaimTemplate: 1 metadata meta.ObjectMeta o; 2 spec core.PersistentVolumeClaimSpec;
core.PersistentVolumeClaimVolumeSource: 1 claimName s; 2 readOnly b o;
core.PhotonPersistentDiskVolumeSource: 1 pdID s; 2 fsType s o;
core.Pod: 1 metadata meta.ObjectMeta o; 2 spec core.PodSpec o; 3 status core.PodStatus o;
core.PodAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution r:core.PodAffinityTerm o;
    2 preferredDuringSchedulingIgnoredDuringExecution r:core.WeightedPodAffinityTerm o;
core.PodAffinityTerm: 1 labelSelector meta.LabelSelector op; 2 namespaces r:s o; 3 topologyKey s;
    4 namespaceSelector meta.LabelSelector op; 5 matchLabelKeys r:s o; 6 mismatchLabelKeys r:s o;
core.PodAntiAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution r:core.PodAffinityTerm o;
    2 preferredDuringSchedulingIgnoredDuringExecution r:core.WeightedPodAffinityTerm o;
core.PodCertificateProjection: 1 signerName s o; 2 keyType s o; 3 maxExpirationSeconds i op;
    4 credentialBundlePath s o; 5 keyPath s o; 6 certificateChainPath s o; 7 userAnnotations ms:s o;
    8 user l op;
core.PodCondition: 1 type s; 7 observedGeneration l o; 2 status s; 3 lastProbeTime meta.Time o;
    4 lastTransitionTime meta.Time o; 5 reason s o; 6 message s o;
core.PodDNSConfig: 1 nameservers r:s o; 2 searches r:s o; 3 options r:core.PodDNSConfigOption o;
core.PodDNSConfigOption: 1 name s o; 2 value s op;
core.PodExtendedResourceClaimStatus: 1 requestMappings r:core.ContainerExtendedResourceRequest;
    2 resourceClaimName s;
core.PodIP: 1 ip s;
core.PodOS: 1 name s;
core.PodReadinessGate: 1 conditionType s;
core.PodResourceClaim: 1 name s; 3 resourceClaimName s op; 4 resourceClaimTemplateName s op;
core.PodResourceClaimStatus: 1 name s; 2 resourceClaimName s op;
core.PodSchedulingGate: 1 name s;
core.PodSchedulingGroup: 1 podGroupName s op;
core.PodSecurityContext: 1 seLinuxOptions core.SELinuxOptions op;
    8 windowsOptions core.WindowsSecurityContextOptions op; 2 runAsUser l op; 6 runAsGroup l op;
    3 runAsNonRoot b op; 4 supplementalGroups r:l o; 12 supplementalGroupsPolicy s op; 5 fsGroup l op;
    7 sysctls r:core.Sysctl o; 9 fsGroupChangePolicy s op; 10 seccompProfile core.SeccompProfile op;
    11 appArmorProfile core.AppArmorProfile op; 13 seLinuxChangePolicy s op;
core.PodSpec: 1 volumes r:core.Volume o; 20 initContainers r:core.Container o; 2 containers r:core.Container;
    34 ephemeralContainers r:core.EphemeralContainer o; 3 restartPolicy s o;
    4 terminationGracePeriodSeconds l op; 5 activeDeadlineSeconds l op; 6 dnsPolicy s o; 7 nodeSelector ms:s o;
    8 serviceAccountName s o; 9 serviceAccount s o; 21 automountServiceAccountToken b op; 10 nodeName s o;
    11 hostNetwork b o; 12 hostPID b o; 13 hostIPC b o; 27 shareProcessNamespace b op;
    14 securityContext core.PodSecurityContext op; 15 imagePullSecrets r:core.LocalObjectReference o;
    16 hostname s o; 17 subdomain s o; 18 affinity core.Affinity op; 19 schedulerName s o;
    22 tolerations r:core.Toleration o; 23 hostAliases r:core.HostAlias o; 24 priorityClassName s o;
    25 priority i op; 26 dnsConfig core.PodDNSConfig op; 28 readinessGates r:core.PodReadinessGate o;
    29 runtimeClassName s op; 30 enableServiceLinks b op; 31 preemptionPolicy s op;
    32 overhead ms:resource.Quantity o; 33 topologySpreadConstraints r:core.TopologySpreadConstraint o;
    35 setHostnameAsFQDN b op; 36 os core.PodOS op; 37 hostUsers b op;
    38 schedulingGates r:core.PodSchedulingGate o; 39 resourceClaims r:core.PodResourceClaim o;
    40 resources core.ResourceRequirements op; 41 hostnameOverride s op;
    43 schedulingGroup core.PodSchedulingGroup op; 44 evictionResponders r:core.EvictionResponder o;
core.PodStatus: 17 observedGeneration l o; 1 phase s o; 2 conditions r:core.PodCondition o; 3 message s o;
    4 reason s o; 11 nominatedNodeName s o; 5 hostIP s o; 16 hostIPs r:core.HostIP o; 6 podIP s o;
    12 podIPs r:core.PodIP o; 7 startTime meta.Time op; 10 initContainerStatuses r:core.ContainerStatus o;
    8 containerStatuses r:core.ContainerStatus o; 9 qosClass s o;
    13 ephemeralContainerStatuses r:core.ContainerStatus o; 14 resize s o;
    15 resourceClaimStatuses r:core.PodResourceClaimStatus o;
    18 extendedResourceClaimStatus core.PodExtendedResourceClaimStatus op;
    19 allocatedResources ms:resource.Quantity o; 20 resources core.ResourceRequirements op;
    21 nodeAllocatableResourceClaimStatuses r:core.NodeAllocatableResourceClaimStatus o;
    22 volumeHealth r:core.PodVolumeHealth o;
core.PodTemplate: 1 metadata meta.ObjectMeta o; 2 template core.PodTemplateSpec o;
core.PodTemplateSpec: 1 metadata meta.ObjectMeta o; 2 spec core.PodSpec o;
core.PodVolumeHealth: 1 name s; 2 healthConditions r:core.VolumeHealthCondition o;
    3 lastTransitionTime meta.Time o;
core.PortStatus: 1 port i; 2 protocol s; 3 error s op;
core.PortworxVolumeSource: 1 volumeID s; 2 fsType s o; 3 readOnly b o;
core.PreferredSchedulingTerm: 1 weight i; 2 preference core.NodeSelectorTerm;
core.Probe: 1 * core.ProbeHandler; 2 initialDelaySeconds i o; 3 timeoutSeconds i o; 4 periodSeconds i o;
    5 successThreshold i o; 6 failureThreshold i o; 7 terminationGracePeriodSeconds l op;
core.ProbeHandler: 1 exec core.ExecAction op; 2 httpGet core.HTTPGetAction op;
    3 tcpSocket core.TCPSocketAction op; 4 grpc core.GRPCAction op;
core.ProjectedVolumeSource: 1 sources r:core.VolumeProjection; 2 defaultMode i op; 3 defaultUser l op;
core.QuobyteVolumeSource: 1 registry s; 2 volume s; 3 readOnly b o; 4 user s o; 5 group s o; 6 tenant s o;
core.RBDVolumeSource: 1 monitors r:s; 2 image s; 3 fsType s o; 4 pool s o; 5 user s o; 6 keyring s o;
    7 secretRef core.LocalObjectReference op; 8 readOnly b o;
core.ResourceClaim: 1 name s; 2 request s o;
core.ResourceFieldSelector: 1 containerName s o; 2 resource s; 3 divisor resource.Quantity o;
core.ResourceHealth: 1 resourceID s; 2 health s o; 6 message s op;
core.ResourceQuota: 1 metadata meta.ObjectMeta o; 2 spec core.ResourceQuotaSpec o;
    3 status core.ResourceQuotaStatus o;
core.ResourceQuotaSpec: 1 hard ms:resource.Quantity o; 2 scopes r:s o; 3 scopeSelector core.ScopeSelector op;
core.ResourceQuotaStatus: 1 hard ms:resource.Quantity o; 2 used ms:resource.Quantity o;
core.ResourceRequirements: 1 limits ms:resource.Quantity o; 2 requests ms:resource.Quantity o;
    3 claims r:core.ResourceClaim o;
core.ResourceStatus: 1 name s; 2 resources r:core.ResourceHealth o;
core.SELinuxOptions: 1 user s o; 2 role s o; 3 type s o; 4 level s o;
core.ScaleIOVolumeSource: 1 gateway s; 2 system s; 3 secretRef core.LocalObjectReference p; 4 sslEnabled b o;
    5 protectionDomain s o; 6 storagePool s o; 7 storageMode s o; 8 volumeName s o; 9 fsType s o;
    10 readOnly b o;
core.ScopeSelector: 1 matchExpressions r:core.ScopedResourceSelectorRequirement o;
core.ScopedResourceSelectorRequirement: 1 scopeName s; 2 operator s; 3 values r:s o;
core.SeccompProfile: 1 type s; 2 localhostProfile s op;
core.Secret: 1 metadata meta.ObjectMeta o; 5 immutable b op; 2 data ms:y o; 4 stringData ms:s o; 3 type s o;
core.SecretEnvSource: 1 * core.LocalObjectReference; 2 optional b op;
core.SecretKeySelector: 1 * core.LocalObjectReference; 2 key s; 3 optional b op;
core.SecretProjection: 1 * core.LocalObjectReference; 2 items r:core.KeyToPath o; 4 optional b op;
core.SecretVolumeSource: 1 secretName s o; 2 items r:core.KeyToPath o; 3 defaultMode i op; 4 optional b op;
    5 defaultUser l op;
core.SecurityContext: 1 capabilities core.Capabilities op; 2 privileged b op;
    3 seLinuxOptions core.SELinuxOptions op; 10 windowsOptions core.WindowsSecurityContextOptions op;
    4 runAsUser l op; 8 runAsGroup l op; 5 runAsNonRoot b op; 6 readOnlyRootFilesystem b op;
    7 allowPrivilegeEscalation b op; 9 procMount s op; 11 seccompProfile core.SeccompProfile op;
    12 appArmorProfile core.AppArmorProfile op;
core.Service: 1 metadata meta.ObjectMeta o; 2 spec core.ServiceSpec o; 3 status core.ServiceStatus o;
core.ServiceAccount: 1 metadata meta.ObjectMeta o; 2 secrets r:core.ObjectReference o;
    3 imagePullSecrets r:core.LocalObjectReference o; 4 automountServiceAccountToken b op;
core.ServiceAccountTokenProjection: 1 audience s o; 2 expirationSeconds l op; 3 path s; 4 user l op;
core.ServicePort: 1 name s o; 2 protocol s o; 6 appProtocol s op; 3 port i; 4 targetPort intstr.IntOrString o;
    5 nodePort i o;
core.ServiceSpec: 1 ports r:core.ServicePort o; 2 selector ms:s o; 3 clusterIP s o; 18 clusterIPs r:s o;
    4 type s o; 5 externalIPs r:s o; 7 sessionAffinity s o; 8 loadBalancerIP s o;
    9 loadBalancerSourceRanges r:s o; 10 externalName s o; 11 externalTrafficPolicy s o;
    12 healthCheckNodePort i o; 13 publishNotReadyAddresses b o;
    14 sessionAffinityConfig core.SessionAffinityConfig op; 19 ipFamilies r:s o; 17 ipFamilyPolicy s op;
    20 allocateLoadBalancerNodePorts b op; 21 loadBalancerClass s op; 22 internalTrafficPolicy s op;
    23 trafficDistribution s op;
core.ServiceStatus: 1 loadBalancer core.LoadBalancerStatus o; 2 conditions r:meta.Condition o;
core.SessionAffinityConfig: 1 clientIP core.ClientIPConfig op;
core.SleepAction: 1 seconds l;
core.StorageOSVolumeSource: 1 volumeName s o; 2 volumeNamespace s o; 3 fsType s o; 4 readOnly b o;
    5 secretRef core.LocalObjectReference op;
core.Sysctl: 1 name s; 2 value s;
core.TCPSocketAction: 1 port intstr.IntOrString; 2 host s o;
core.Taint: 1 key s; 2 value s o; 3 effect s; 4 timeAdded meta.Time op;
core.Toleration: 1 key s o; 2 operator s o; 3 value s o; 4 effect s o; 5 tolerationSeconds l op;
core.TopologySpreadConstraint: 1 maxSkew i; 2 topologyKey s; 3 whenUnsatisfiable s;
    4 labelSelector meta.LabelSelector op; 5 minDomains i op; 6 nodeAffinityPolicy s op;
    7 nodeTaintsPolicy s op; 8 matchLabelKeys r:s o;
core.TypedLocalObjectReference: 1 apiGroup s p; 2 kind s; 3 name s;
core.TypedObjectReference: 1 apiGroup s p; 2 kind s; 3 name s; 4 namespace s op;
core.Volume: 1 name s; 2 * core.VolumeSource;
core.VolumeDevice: 1 name s; 2 devicePath s;
core.VolumeHealthCondition: 1 status s; 2 reason s; 3 message s o;
core.VolumeHealthStatus: 1 healthConditions r:core.VolumeHealthCondition o; 2 lastTransitionTime meta.Time o;
core.VolumeMount: 1 name s; 2 readOnly b o; 7 recursiveReadOnly s op; 3 mountPath s; 4 subPath s o;
    5 mountPropagation s op; 6 subPathExpr s o; 8 bindMountOptions r:s o;
core.VolumeMountStatus: 1 name s; 2 mountPath s; 3 readOnly b o; 4 recursiveReadOnly s op;
    5 volumeStatus core.VolumeStatus op;
core.VolumeProjection: 1 secret core.SecretProjection op; 2 downwardAPI core.DownwardAPIProjection op;
    3 configMap core.ConfigMapProjection op; 4 serviceAccountToken core.ServiceAccountTokenProjection op;
    5 clusterTrustBundle core.ClusterTrustBundleProjection op;
    6 podCertificate core.PodCertificateProjection op;
core.VolumeResourceRequirements: 1 limits ms:resource.Quantity o; 2 requests ms:resource.Quantity o;
core.VolumeSource: 1 hostPath core.HostPathVolumeSource op; 2 emptyDir core.EmptyDirVolumeSource op;
    3 gcePersistentDisk core.GCEPersistentDiskVolumeSource op;
    4 awsElasticBlockStore core.AWSElasticBlockStoreVolumeSource op; 5 gitRepo core.GitRepoVolumeSource op;
    6 secret core.SecretVolumeSource op; 7 nfs core.NFSVolumeSource op; 8 iscsi core.ISCSIVolumeSource op;
    9 glusterfs core.GlusterfsVolumeSource op;
    10 persistentVolumeClaim core.PersistentVolumeClaimVolumeSource op; 11 rbd core.RBDVolumeSource op;
    12 flexVolume core.FlexVolumeSource op; 13 cinder core.CinderVolumeSource op;
    14 cephfs core.CephFSVolumeSource op; 15 flocker core.FlockerVolumeSource op;
    16 downwardAPI core.DownwardAPIVolumeSource op; 17 fc core.FCVolumeSource op;
    18 azureFile core.AzureFileVolumeSource op; 19 configMap core.ConfigMapVolumeSource op;
    20 vsphereVolume core.VsphereVirtualDiskVolumeSource op; 21 quobyte core.QuobyteVolumeSource op;
    22 azureDisk core.AzureDiskVolumeSource op;
    23 photonPersistentDisk core.PhotonPersistentDiskVolumeSource op;
    26 projected core.ProjectedVolumeSource op; 24 portworxVolume core.PortworxVolumeSource op;
    25 scaleIO core.ScaleIOVolumeSource op; 27 storageos core.StorageOSVolumeSource op;
    28 csi core.CSIVolumeSource op; 29 ephemeral core.EphemeralVolumeSource op;
    30 image core.ImageVolumeSource op;
core.VolumeStatus: 1 image core.ImageVolumeStatus op;
core.VsphereVirtualDiskVolumeSource: 1 volumePath s; 2 fsType s o; 3 storagePolicyName s o;
    4 storagePolicyID s o;
core.WeightedPodAffinityTerm: 1 weight i; 2 podAffinityTerm core.PodAffinityTerm;
core.WindowsSecurityContextOptions: 1 gmsaCredentialSpecName s op; 2 gmsaCredentialSpec s op;
    3 runAsUserName s op; 4 hostProcess b op;
discovery.Endpoint: 1 addresses r:s; 2 conditions discovery.EndpointConditions o; 3 hostname s op;
    4 targetRef core.ObjectReference op; 5 deprecatedTopology ms:s o; 6 nodeName s op; 7 zone s op;
    8 hints discovery.EndpointHints op;
discovery.EndpointConditions: 1 ready b op; 2 serving b op; 3 terminating b op;
discovery.EndpointHints: 1 forZones r:discovery.ForZone o; 2 forNodes r:discovery.ForNode o;
discovery.EndpointPort: 1 name s op; 2 protocol s op; 3 port i op; 4 appProtocol s op;
discovery.EndpointSlice: 1 metadata meta.ObjectMeta o; 4 addressType s; 2 endpoints r:discovery.Endpoint;
    3 ports r:discovery.EndpointPort;
discovery.ForNode: 1 name s;
discovery.ForZone: 1 name s;
meta.Condition: 1 type s; 2 status s; 3 observedGeneration l o; 4 lastTransitionTime meta.Time; 5 reason s;
    6 message s;
meta.FieldSelectorRequirement: 1 key s; 2 operator s; 3 values r:s o;
meta.LabelSelector: 1 matchLabels ms:s o; 2 matchExpressions r:meta.LabelSelectorRequirement o;
meta.LabelSelectorRequirement: 1 key s; 2 operator s; 3 values r:s o;
meta.ListMeta: 1 selfLink s o; 2 resourceVersion s o; 3 continue s o; 4 remainingItemCount l op;
    5 shardInfo meta.ShardInfo op;
meta.ManagedFieldsEntry: 1 manager s o; 2 operation s o; 3 apiVersion s o; 4 time meta.Time op;
    6 fieldsType s o; 7 fieldsV1 meta.FieldsV1 op; 8 subresource s o;
meta.ObjectMeta: 1 name s o; 2 generateName s o; 3 namespace s o; 4 selfLink s o; 5 uid s o;
    6 resourceVersion s o; 7 generation l o; 8 creationTimestamp meta.Time o; 9 deletionTimestamp meta.Time op;
    10 deletionGracePeriodSeconds l op; 11 labels ms:s o; 12 annotations ms:s o;
    13 ownerReferences r:meta.OwnerReference o; 14 finalizers r:s o;
    17 managedFields r:meta.ManagedFieldsEntry o;
meta.OwnerReference: 5 apiVersion s; 1 kind s; 3 name s; 4 uid s; 6 controller b op; 7 blockOwnerDeletion b op;
meta.ShardInfo: 1 selector s;
meta.Status: 1 metadata meta.ListMeta o; 2 status s o; 3 message s o; 4 reason s o;
    5 details meta.StatusDetails op; 6 code i o;
meta.StatusCause: 1 reason s o; 2 message s o; 3 field s o;
meta.StatusDetails: 1 name s o; 2 group s o; 3 kind s o; 6 uid s o; 4 causes r:meta.StatusCause o;
    5 retryAfterSeconds i o;
rbac.AggregationRule: 1 clusterRoleSelectors r:meta.LabelSelector o;
rbac.ClusterRole: 1 metadata meta.ObjectMeta o; 2 rules r:rbac.PolicyRule; 3 aggregationRule rbac.AggregationRule op;
rbac.ClusterRoleBinding: 1 metadata meta.ObjectMeta o; 2 subjects r:rbac.Subject o; 3 roleRef rbac.RoleRef;
rbac.PolicyRule: 1 verbs r:s; 2 apiGroups r:s o; 3 resources r:s o; 4 resourceNames r:s o; 5 nonResourceURLs r:s o;
rbac.RoleRef: 1 apiGroup s; 2 kind s; 3 name s;
rbac.Subject: 1 kind s; 2 apiGroup s o; 3 name s; 4 namespace s o;
"""


@dataclass(frozen=True)
class Field:
    """One field of a message: wire number, JSON name and how Go encodes it."""

    number: int
    name: str
    kind: str  # scalar code (s b i l y d f) or a message name
    repeated: bool = False
    is_map: bool = False
    omitempty: bool = False
    pointer: bool = False


def _parse_schema(text: str) -> dict[str, dict[int, Field]]:
    """Turn the SCHEMA text into {message: {number: Field}} (fields kept in Go struct order)."""
    messages: dict[str, dict[int, Field]] = {}
    current: dict[int, Field] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            name, _, line = line.partition(":")
            current = messages.setdefault(name, {})
        for entry in filter(None, (e.strip() for e in line.split(";"))):
            number, json_name, kind, *flags = entry.split()
            shape, _, kind = kind.rpartition(":")
            flag = flags[0] if flags else ""
            current[int(number)] = Field(int(number), json_name, kind, repeated=shape == "r", is_map=shape == "ms",
                                         omitempty="o" in flag, pointer="p" in flag)
    return messages


MESSAGES = _parse_schema(SCHEMA)

# Wire types of the protobuf encoding.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_SCALAR_WIRE = {"s": LEN, "y": LEN, "b": VARINT, "i": VARINT, "l": VARINT, "d": FIXED64, "f": FIXED32}

Value = int | bytes


def is_protobuf(body: bytes) -> bool:
    """True when `body` starts with the Kubernetes protobuf magic `k8s\\0`."""
    return body[:4] == MAGIC


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a base-128 varint at `pos`; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _wire_fields(buf: bytes) -> Iterator[tuple[int, int, Value]]:
    """Yield (field number, wire type, value) for each field of one message; values are ints or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("invalid field number 0")
        value: Value
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(buf):
                raise ProtobufError(f"truncated fixed{size * 8} field {number}")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        elif wire == LEN:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ProtobufError(f"field {number}: length {size} runs past the end of the message")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def _signed(value: int, bits: int) -> int:
    """Two's-complement view of the low `bits` bits (Go truncates an int32 varint the same way)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(kind: str, value: Value) -> Any:
    """JSON value of one scalar read with the right wire type."""
    if kind == "s":
        assert isinstance(value, bytes)
        return value.decode("utf-8", errors="replace")  # Go's JSON encoder also turns bad UTF-8 into U+FFFD
    if kind == "y":
        assert isinstance(value, bytes)
        return base64.b64encode(value).decode("ascii")
    assert isinstance(value, int)
    if kind == "b":
        return value != 0
    if kind == "i":
        return _signed(value, 32)
    if kind == "l":
        return _signed(value, 64)
    return struct.unpack("<d" if kind == "d" else "<f", value.to_bytes(8 if kind == "d" else 4, "little"))[0]


_SCALAR_ZERO: dict[str, Any] = {"s": "", "y": "", "b": False, "i": 0, "l": 0, "d": 0.0, "f": 0.0}


def _fields_of(data: bytes) -> dict[int, list[Value]]:
    """Group the wire values of one message by field number (wire types unchecked)."""
    grouped: dict[int, list[Value]] = {}
    for number, _wire, value in _wire_fields(data):
        grouped.setdefault(number, []).append(value)
    return grouped


def _time_seconds(data: bytes) -> int | None:
    """Seconds of a meta/v1 Time or MicroTime message, None for the zero time (empty message)."""
    if not data:
        return None
    fields = _fields_of(data)
    seconds = fields.get(1, [0])[-1]
    if not isinstance(seconds, int):
        raise ProtobufError("Time.seconds must be a varint")
    return _signed(seconds, 64)


def _format_time(seconds: int, micros: int | None) -> str:
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros or 0)
    except OverflowError as exc:
        raise ProtobufError(f"time out of range: {seconds}s") from exc
    if micros is None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(data: bytes, depth: int) -> Any:
    """metav1.Time: RFC 3339 in UTC, whole seconds (the decoder ignores nanos, like upstream)."""
    seconds = _time_seconds(data)
    return None if seconds is None else _format_time(seconds, None)


def _micro_time(data: bytes, depth: int) -> Any:
    """metav1.MicroTime: RFC 3339 with six fractional digits, in UTC."""
    seconds = _time_seconds(data)
    if seconds is None:
        return None
    nanos = _fields_of(data).get(2, [0])[-1]
    if not isinstance(nanos, int):
        raise ProtobufError("MicroTime.nanos must be a varint")
    return _format_time(seconds, _signed(nanos, 32) // 1000)


def _int_or_string(data: bytes, depth: int) -> Any:
    """intstr.IntOrString{1: type (0 int, 1 string), 2: intVal, 3: strVal} → int or str."""
    fields = _fields_of(data)
    kind, int_val, str_val = fields.get(1, [0])[-1], fields.get(2, [0])[-1], fields.get(3, [b""])[-1]
    if not isinstance(kind, int) or not isinstance(int_val, int) or not isinstance(str_val, bytes):
        raise ProtobufError("malformed IntOrString")
    if kind == 0:
        return _signed(int_val, 32)
    if kind == 1:
        return str_val.decode("utf-8", errors="replace")
    raise ProtobufError(f"IntOrString has impossible type {kind}")


def _quantity(data: bytes, depth: int) -> Any:
    """resource.Quantity{1: string} → its string form ("500m", "1Gi")."""
    value = _fields_of(data).get(1, [b"0"])[-1]
    if not isinstance(value, bytes):
        raise ProtobufError("Quantity.string must be a string")
    return value.decode("utf-8", errors="replace")


def _raw_json(data: bytes, depth: int) -> Any:
    """RawExtension / FieldsV1 {1: raw}: the embedded object (JSON, or a nested protobuf object)."""
    raw = _fields_of(data).get(1, [b""])[-1]
    if not isinstance(raw, bytes):
        raise ProtobufError("raw must be bytes")
    if not raw:
        return None
    if is_protobuf(raw):
        return _decode(raw, depth + 1)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProtobufError(f"embedded object is not JSON: {exc}") from exc


# Messages with their own encoding: decoder, and the JSON value Go emits for an absent non-pointer field.
_SPECIAL: dict[str, tuple[Callable[[bytes, int], Any], Any]] = {
    "meta.Time": (_time, None),
    "meta.MicroTime": (_micro_time, None),
    "intstr.IntOrString": (_int_or_string, 0),
    "resource.Quantity": (_quantity, "0"),
    "runtime.RawExtension": (_raw_json, None),
    "meta.FieldsV1": (_raw_json, None),
}


def _is_zero(value: Any) -> bool:
    """What Go's `omitempty` treats as empty among decoded scalars ("", 0, 0.0, false)."""
    return value == "" or value == 0


def _value(field: Field, wire: int, value: Value, depth: int, where: str) -> Any:
    """JSON value of one (non-repeated-container) occurrence of `field`."""
    if field.kind in _SCALAR_WIRE:
        if wire != _SCALAR_WIRE[field.kind]:
            raise ProtobufError(f"{where}: wrong wire type {wire}")
        return _scalar(field.kind, value)
    if wire != LEN:
        raise ProtobufError(f"{where}: wrong wire type {wire} for a message")
    assert isinstance(value, bytes)
    if field.kind in _SPECIAL:
        return _SPECIAL[field.kind][0](value, depth)
    return _message(field.kind, value, depth + 1)


def _packed(field: Field, data: bytes, where: str) -> list[Any]:
    """Scalars of a packed repeated field (one length-delimited run of varints or fixed values)."""
    wire = _SCALAR_WIRE[field.kind]
    out: list[Any] = []
    pos = 0
    while pos < len(data):
        if wire == VARINT:
            number, pos = _varint(data, pos)
        else:
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError(f"{where}: truncated packed field")
            number, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        out.append(_scalar(field.kind, number))
    return out


def _map_entry(field: Field, data: bytes, depth: int, where: str) -> tuple[str, Any]:
    """One map entry message {1: key, 2: value}; missing parts take their zero value."""
    key: Any = ""
    value: Any = None
    seen_value = False
    for number, wire, raw in _wire_fields(data):
        if number == 1:
            if wire != LEN:
                raise ProtobufError(f"{where}: map key must be a string")
            key = _scalar("s", raw)
        elif number == 2:
            value, seen_value = _value(field, wire, raw, depth, where), True
    if not seen_value:
        value = _zero(field, depth)
    return key, value


def _zero(field: Field, depth: int) -> Any:
    """The JSON Go emits for a non-pointer field that was absent on the wire (its zero value)."""
    if field.kind in _SCALAR_ZERO:
        return _SCALAR_ZERO[field.kind]
    if field.kind in _SPECIAL:
        return _SPECIAL[field.kind][1]
    return _message(field.kind, b"", depth + 1)


def _message(name: str, data: bytes, depth: int) -> dict[str, Any]:
    """Decode one message of SCHEMA type `name` into its JSON object."""
    if depth > MAX_DEPTH:
        raise ProtobufError("message nested too deeply")
    schema = MESSAGES[name]
    occurrences: dict[int, list[tuple[int, Value]]] = {}
    for number, wire, value in _wire_fields(data):
        if number in schema:  # unknown fields are skipped, like a newer client's additions
            occurrences.setdefault(number, []).append((wire, value))
    out: dict[str, Any] = {}
    for number, field in schema.items():
        where = f"{name}.{field.name}"
        seen = occurrences.get(number, [])
        if field.is_map:
            entries = dict(_map_entry(field, raw, depth, where) for raw in _len_values(seen, where))
            if entries or not field.omitempty:
                out[field.name] = entries or None
        elif field.repeated:
            items: list[Any] = []
            for wire, raw in seen:
                if field.kind in _SCALAR_WIRE and wire == LEN and _SCALAR_WIRE[field.kind] != LEN:
                    assert isinstance(raw, bytes)
                    items.extend(_packed(field, raw, where))
                else:
                    items.append(_value(field, wire, raw, depth, where))
            if items or not field.omitempty:
                out[field.name] = items or None
        elif field.kind in MESSAGES:
            # Repeated occurrences of an embedded message merge, like protobuf's concatenation rule.
            if not seen and field.pointer:
                continue
            value = _message(field.kind, b"".join(_len_values(seen, where)), depth + 1)
            if field.name == "*":
                out.update(value)
            else:
                out[field.name] = value
        elif seen:
            wire, raw = seen[-1]  # the last occurrence of a singular field wins
            value = _value(field, wire, raw, depth, where)
            if field.pointer or not (field.omitempty and field.kind in _SCALAR_ZERO and _is_zero(value)):
                out[field.name] = value
        elif not field.pointer:
            value = _zero(field, depth)
            if not (field.omitempty and field.kind in _SCALAR_ZERO):
                out[field.name] = value
    return out


def _len_values(seen: list[tuple[int, Value]], where: str) -> list[bytes]:
    """The payloads of occurrences that must be length-delimited (messages, map entries)."""
    out: list[bytes] = []
    for wire, raw in seen:
        if wire != LEN or not isinstance(raw, bytes):
            raise ProtobufError(f"{where}: wrong wire type {wire} for a message")
        out.append(raw)
    return out


def _envelope(body: bytes) -> tuple[str, str, bytes]:
    """Split `k8s\\0` + runtime.Unknown into (apiVersion, kind, raw object bytes)."""
    if not is_protobuf(body):
        raise ProtobufError("body does not start with the Kubernetes protobuf magic k8s\\0")
    api_version = kind = ""
    raw = b""
    encoding = content_type = ""
    for number, wire, value in _wire_fields(body[4:]):
        if number in (1, 2, 3, 4) and wire != LEN:
            raise ProtobufError(f"runtime.Unknown field {number}: wrong wire type {wire}")
        assert number not in (1, 2, 3, 4) or isinstance(value, bytes)
        if number == 1:
            for tm_number, tm_wire, tm_value in _wire_fields(value):  # type: ignore[arg-type]
                if tm_number in (1, 2):
                    if tm_wire != LEN:
                        raise ProtobufError("TypeMeta fields must be strings")
                    text = _scalar("s", tm_value)
                    api_version, kind = (text, kind) if tm_number == 1 else (api_version, text)
        elif number == 2:
            raw = value  # type: ignore[assignment]
        elif number == 3:
            encoding = _scalar("s", value)
        elif number == 4:
            content_type = _scalar("s", value)
    if encoding:
        raise ProtobufError(f"unsupported protobuf contentEncoding {encoding!r}")
    if content_type not in ("", "application/vnd.kubernetes.protobuf"):
        raise ProtobufError(f"unsupported protobuf contentType {content_type!r}")
    if not kind:
        raise ProtobufError("protobuf envelope has no kind")
    return api_version, kind, raw


def _decode(body: bytes, depth: int) -> dict[str, Any]:
    api_version, kind, raw = _envelope(body)
    message = KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f"protobuf decoding of {api_version} {kind} is not supported; send JSON")
    return {"kind": kind, "apiVersion": api_version, **_message(message, raw, depth + 1)}


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\0`-prefixed protobuf body into the object as Kubernetes JSON (with apiVersion and kind).

    Raises ProtobufError for anything that is not a well-formed object of a supported kind.
    """
    try:
        return _decode(bytes(body), 0)
    except ProtobufError:
        raise
    except (RecursionError, ValueError, TypeError, AssertionError, OverflowError, AttributeError, KeyError) as exc:
        # Defensive: any other failure of a hostile body is still the client's fault.
        raise ProtobufError(f"malformed protobuf body: {exc}") from exc
