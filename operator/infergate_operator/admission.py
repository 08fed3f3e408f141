"""The signed-models admission policy: a ValidatingAdmissionPolicy (CEL, evaluated inside the API server, no
webhook to run) that refuses InferenceModels without a signature or with an unpinned artifact.

Pure: these functions return the objects; the chart (templates/admission-policy.yaml) and the kustomize
component (manifests/components/signed-models/) carry copies that tests/unit/test_admission.py keeps equal.
It applies in namespaces labelled REQUIRE_LABEL=true, or in every namespace when the binding is built with
`every_namespace` (the chart's `signedModels.enforce: all`, the cluster-wide switch).
"""

from __future__ import annotations

from typing import Any

from infergate_operator.spec_base import GROUP, PINNED_HF_RE, PINNED_OCI_RE, PLURAL, VERSION

POLICY_NAME = "infergate-signed-models"
REQUIRE_LABEL = "infergate.io/require-signed-models"

_PINNED_URI = (
    f"object.spec.model.uri.matches('{PINNED_OCI_RE}') || object.spec.model.uri.matches('{PINNED_HF_RE}')"
)

VALIDATIONS: tuple[dict[str, str], ...] = (
    {
        "expression": "has(object.spec.model.signature)",
        "message": (
            f"spec.model.signature: required here (ValidatingAdmissionPolicy {POLICY_NAME}): sign the model "
            "and give bundleUri, identity and issuer"
        ),
        "reason": "Forbidden",
    },
    {
        "expression": "has(object.spec.model.sha256) || " + _PINNED_URI,
        "message": (
            "spec.model.uri: the artifact must be pinned here: give spec.model.sha256, or an "
            "oci://<registry>/<repository>@sha256:<digest> or hf://<org>/<repo>@<40-hex commit> uri"
        ),
        "reason": "Forbidden",
    },
    {
        "expression": (
            "!has(object.spec.runtime.tokenizer) || !has(object.spec.runtime.tokenizer.uri) || "
            "has(object.spec.runtime.tokenizer.sha256) || "
            + _PINNED_URI.replace("object.spec.model.uri", "object.spec.runtime.tokenizer.uri")
        ),
        "message": "spec.runtime.tokenizer.uri: the tokenizer must be pinned here (sha256 or a pinned uri)",
        "reason": "Forbidden",
    },
)


def build_policy() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [PLURAL],
                    }
                ]
            },
            "validations": [dict(v) for v in VALIDATIONS],
        },
    }


def build_binding(every_namespace: bool = False) -> dict[str, Any]:
    """Deny in namespaces labelled REQUIRE_LABEL=true, or in all of them."""
    spec: dict[str, Any] = {"policyName": POLICY_NAME, "validationActions": ["Deny"]}
    if not every_namespace:
        spec["matchResources"] = {
            "namespaceSelector": {"matchLabels": {REQUIRE_LABEL: "true"}},
        }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": spec,
    }
