"""Surge on Kubernetes, the pure half: names, object builders, status and reconcile plans.

Nothing here talks to a cluster. Modules: `names` (Knative's kmeta.ChildName, child
names, label keys, owner references), `children` (a Service's Configuration and Route,
a Configuration's Revision), `deployment` (a Revision's Deployment with the queue-proxy
sidecar; config-deployment), `services` (the per-revision private Service and the
per-route placeholder Services), `status` (Knative's conditions from the objects
listed), `reconcile` (the creates, updates and deletes that make the cluster match).

The I/O half is imported by its module path only, so importing this package never
loads kubernetes_asyncio: `client` (Api, Kind, load_api), `informer` (Informer,
WorkQueue, backoff_s), `controller` (Controller, run_controller).
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
from .names import (
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
    "QUEUE_CONTAINER_NAME",
    "Action",
    "Conflict",
    "Create",
    "Delete",
    "DeploymentConfig",
    "Plan",
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
    "is_derivative",
    "is_ready",
    "latest_revision_name",
    "make_configuration",
    "make_deployment",
    "make_private_service",
    "make_revision",
    "make_route",
    "make_route_services",
    "object_key",
    "overlay",
    "owner_reference",
    "parse_deployment_config",
    "parse_go_duration",
    "parse_quantity",
    "plan",
    "plan_status",
    "private_service_name",
    "problems_message",
    "render_conditions",
    "revision_labels",
    "revision_model",
    "revision_name",
    "revision_problem",
    "revision_status",
    "route_status",
    "service_status",
    "service_traffic",
    "tag_service_name",
    "user_probe",
]
