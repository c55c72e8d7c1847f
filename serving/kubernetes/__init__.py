"""Surge on Kubernetes, the pure half: names, object builders, status and reconcile plans.

Nothing exported here talks to a cluster. Modules:
- `names`: Knative's kmeta.ChildName, child names, label and annotation keys, owner
  references;
- `children`: a Service's Configuration and Route, a Configuration's Revision;
- `deployment`: a Revision's Deployment with the queue-proxy sidecar; config-deployment;
- `metrics_server`: the Prometheus endpoint of the autoscaler and activator daemons
  (aiohttp; imported by path, like the I/O half below);
- `podspec`: the pod fields only Kubernetes honours (envFrom, volumes, ...), checked and
  passed through to the Deployment as written;
- `services`: the per-revision private Service and the per-route placeholder Services;
- `status`: Knative's conditions from the objects listed (pods give failure reasons);
- `reconcile`: the creates, updates and deletes that make the cluster match;
- `routing`: a Revision's routingState (pending, active, reserve) from the Routes;
- `endpoints`: what the autoscaler and activator read off the cluster (EndpointSlice
  pods, the mode annotation, a Route's activator host routes).

The I/O half is imported by its module path only, so importing this package never
loads kubernetes_asyncio: `client` (Api, Kind, load_api), `informer` (Informer,
WorkQueue, backoff_s), `controller` (Controller, run_controller, `surge controller`),
`autoscaler_main` (KubernetesAutoscaler, run_autoscaler, `surge autoscaler`) and
`activator_main` (KubernetesActivator, run_activator, `surge activator`).
"""

from .children import (
    defaulted_spec,
    latest_revision_name,
    make_configuration,
    make_revision,
    make_route,
    revision_model,
    revision_problem,
    service_traffic,
)
from .deployment import (
    QUEUE_CONTAINER_NAME,
    DeploymentConfig,
    make_deployment,
    parse_deployment_config,
    parse_go_duration,
    revision_labels,
    user_probe,
)
from .endpoints import (
    MODE_ANNOTATION,
    SERVICE_NAME_LABEL,
    SlicePod,
    host_routes,
    mode_annotation,
    mode_of,
    probe_optimisation,
    revision_of_slice,
    slice_pods,
)
from .names import (
    ROUTES_ANNOTATION,
    ROUTING_STATE_LABEL,
    ROUTING_STATE_MODIFIED_ANNOTATION,
    child_name,
    deployment_name,
    owner_reference,
    private_service_name,
    revision_name,
    tag_service_name,
)
from .reconcile import (
    Action,
    Conflict,
    Create,
    Delete,
    Plan,
    Update,
    UpdateStatus,
    controller_uid,
    is_derivative,
    object_key,
    overlay,
    parse_quantity,
    plan,
    plan_status,
)
from .routing import ACTIVE, PENDING, RESERVE, routed_revisions, routing_state, \
    with_routing_state
from .services import activator_host, make_private_service, make_route_services
from .status import (
    condition,
    configuration_status,
    failed_status,
    is_ready,
    problems_message,
    render_conditions,
    revision_status,
    route_status,
    service_status,
)

__all__ = [
    "ACTIVE",
    "MODE_ANNOTATION",
    "PENDING",
    "QUEUE_CONTAINER_NAME",
    "RESERVE",
    "ROUTES_ANNOTATION",
    "ROUTING_STATE_LABEL",
    "ROUTING_STATE_MODIFIED_ANNOTATION",
    "SERVICE_NAME_LABEL",
    "Action",
    "Conflict",
    "Create",
    "Delete",
    "DeploymentConfig",
    "Plan",
    "SlicePod",
    "Update",
    "UpdateStatus",
    "activator_host",
    "child_name",
    "condition",
    "configuration_status",
    "controller_uid",
    "defaulted_spec",
    "deployment_name",
    "failed_status",
    "host_routes",
    "is_derivative",
    "is_ready",
    "latest_revision_name",
    "make_configuration",
    "make_deployment",
    "make_private_service",
    "make_revision",
    "make_route",
    "make_route_services",
    "mode_annotation",
    "mode_of",
    "object_key",
    "overlay",
    "owner_reference",
    "parse_deployment_config",
    "parse_go_duration",
    "parse_quantity",
    "plan",
    "plan_status",
    "private_service_name",
    "probe_optimisation",
    "problems_message",
    "render_conditions",
    "revision_labels",
    "revision_model",
    "revision_name",
    "revision_of_slice",
    "revision_problem",
    "revision_status",
    "route_status",
    "routed_revisions",
    "routing_state",
    "service_status",
    "service_traffic",
    "slice_pods",
    "tag_service_name",
    "user_probe",
    "with_routing_state",
]
