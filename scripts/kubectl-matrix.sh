#!/usr/bin/env bash
# One row of the README's kubectl table: the verbs, with kubectl.VERSION from the Google Cloud SDK
# and its default flags, against a fresh `cox server` (controllers and scheduler) on PORT and one
# simulated node (`cox agent --runtime fake`: its pods run nothing and report Running and ready, so
# rollouts complete).
#   for v in 1.27 1.28 1.29 1.30 1.31 1.32 1.33; do scripts/kubectl-matrix.sh .build/debug/cox $v; done
COX=${1:?usage: scripts/kubectl-matrix.sh COX-BINARY VERSION [PORT]}; v=${2:?version, e.g. 1.27}; port=${3:-19443}
dir=$(mktemp -d)
$COX server --data-dir $dir --port $port > $dir/log 2>&1 &
pid=$!; sleep 5
$COX agent --runtime fake --kubeconfig $dir/admin.kubeconfig --pki $dir/pki --data-dir $dir/agent --port 0 \
  --node-name matrix --heartbeat-seconds 2 > $dir/agent.log 2>&1 &
agent=$!
K="/usr/lib/google-cloud-sdk/bin/kubectl.$v --kubeconfig $dir/admin.kubeconfig --cache-dir $dir/cache"
m=$dir/m.yaml
cat > $m <<Y
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: busybox, command: [sleep, "1000"]}]}
Y
row="| $v "
t() { if "$@" > $dir/out 2>&1; then row="$row| ✓ "; else row="$row| ✗ "; fi; }
t $K create -f $m
sed -i 's/replicas: 2/replicas: 3/' $m
t $K apply -f $m
t bash -c "$K diff -f $m; test \$? -le 1"
t $K label deploy web tier=front
t $K annotate deploy web note=x
t $K patch deploy web -p '{"spec":{"replicas":2}}'
t $K patch deploy web --type=merge -p '{"spec":{"replicas":2}}'
t $K patch deploy web --type=json -p '[{"op":"replace","path":"/spec/replicas","value":1}]'
t $K apply --server-side --force-conflicts -f $m
t $K scale deploy web --replicas=2
$K annotate deploy web kubernetes.io/change-cause=new-image > /dev/null 2>&1
t $K set image deploy/web web=busybox:2
t $K rollout restart deploy/web
t bash -c "$K rollout history deploy/web | grep -q new-image"
t $K rollout undo deploy/web
t $K rollout status deploy/web --timeout=60s
$K get rs -o name > $dir/rs-before 2>&1
t $K rollout pause deploy/web
t $K set env deploy/web MODE=fast
t $K set resources deploy/web -c web --limits=cpu=200m,memory=64Mi --requests=cpu=100m
# Paused: the template changed, but no new ReplicaSet until resume.
t bash -c "$K get rs -o name | diff - $dir/rs-before"
t $K rollout resume deploy/web
t bash -c "$K rollout status deploy/web --timeout=60s && $K get deploy web -o jsonpath='{.spec.template.spec.containers[0].env[0].value}{.spec.template.spec.containers[0].resources.limits.memory}' | grep -qx fast64Mi"
t $K get all
t bash -c "$K get deploy -w --request-timeout=1s | grep -q NAME"
t $K explain pod.spec.containers
t $K create configmap c --from-literal=a=1
t $K create secret generic s --from-literal=a=1
t $K delete pods -l app=web
t $K wait --for=jsonpath='{.spec.replicas}'=2 deploy/web --timeout=5s
echo "$row|"
kill $agent $pid; wait $agent $pid 2>/dev/null; rm -rf $dir
