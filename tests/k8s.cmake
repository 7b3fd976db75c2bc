# Static validation of the Kubernetes manifests in deploy/k8s/ (no cluster here): every document
# parses, required fields, Service <-> Deployment wiring, probes, securityContext, the worker
# Job's environment, one image, and daemon args limited to what `ms-rendezvousd --help` lists.
# Included from tests/CMakeLists.txt. Debian's /usr/bin/python3 with python3-yaml
# (scripts/bootstrap.sh), never a python3 found first on PATH (pyenv, venv) without PyYAML.
set(MSR_K8S_PYTHON /usr/bin/python3)
get_filename_component(MSR_K8S_SRC ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

add_test(NAME k8s_manifests
         COMMAND ${MSR_K8S_PYTHON} ${MSR_K8S_SRC}/tests/k8s/validate_k8s.py
                 --daemon $<TARGET_FILE:ms-rendezvousd> --dir ${MSR_K8S_SRC}/deploy/k8s)
# The same checks against deliberately broken copies: each break must be reported naming the
# file, the document and the field.
add_test(NAME k8s_manifests_selftest
         COMMAND ${MSR_K8S_PYTHON} ${MSR_K8S_SRC}/tests/k8s/validate_k8s.py
                 --daemon $<TARGET_FILE:ms-rendezvousd> --dir ${MSR_K8S_SRC}/deploy/k8s
                 --self-test)
set_tests_properties(k8s_manifests k8s_manifests_selftest PROPERTIES TIMEOUT 60 LABELS "k8s;deploy")
