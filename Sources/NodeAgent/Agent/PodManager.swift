import API
import ControllerRuntime
import Client
import Foundation
import Logging

/// Drives each pod bound to this node toward its spec: starts containers, restarts them by the
/// restart policy with crash-loop backoff, stops them on deletion (SIGTERM, then SIGKILL after the
/// grace period) and finalizes the deletion, and computes the status the status writer reports.
actor PodManager {
    struct Track {
        var current: RuntimeContainer?
        var previous: RuntimeContainer?
        var restartCount: Int32 = 0
        /// Consecutive crashes, for the backoff; reset after 10 minutes of running.
        var crashes = 0
        var backoffUntil: ContinuousClock.Instant?
        var backoffDelay: Duration = .zero
        /// The current back-off has its BackOff event.
        var backoffReported = false
        var starting = false
        var startError: String?
        /// The runtime's reason for that failure (ErrImagePull, CreateContainerError, ...).
        var startReason: String?
        /// The start failed before the runtime was asked: its environment could not be resolved
        /// (CreateContainerConfigError).
        var configError = false
        /// Exited and, by the restart policy, stays so.
        var done = false
        /// Probe results for the current instance (reset when a new one starts).
        var probes = ProbeState()
        /// An init container that succeeded before this agent started: its status as the last
        /// agent reported it (the runtime may no longer have the container).
        var restored: ContainerStatus?

        /// Exited with 0 and, by the restart policy, stays so: an init container that did its part.
        var succeeded: Bool {
            guard done else { return false }
            if let current, case .exited(let code, _, _, _) = current.state { return code == 0 }
            return restored.map { $0.state.hasTerminated && $0.state.terminated.exitCode == 0 } ?? false
        }

        /// Running, and its startup probe (if any) passed: a sidecar the next init container may follow.
        func started(_ container: Container) -> Bool {
            (current?.isRunning ?? false) && (!container.hasStartupProbe || probes.startupPassed)
        }
    }

    struct ProbeState {
        var startupPassed = false
        var ready = false
        var successes: [Prober.Kind: Int] = [:]
        var failures: [Prober.Kind: Int] = [:]
        var lastRun: [Prober.Kind: Date] = [:]
        var inFlight: Set<Prober.Kind> = []
    }

    struct PodState {
        var pod: Pod
        var tracks: [String: Track] = [:]
        var startTime: Timestamp
        var terminating = false
        var lastReported: PodStatus?
        /// The sandbox's own address (runtimes with pod networking); nil: the node's.
        var podIP: String?
        /// Where each volume is on the node, once all are set up (containers wait until then).
        var volumePaths: [String: String]?
        /// When the volumes' contents were last brought up to date (and emptyDir use measured).
        var volumesSyncedAt: ContinuousClock.Instant?
        /// A set-up under way (the actor is re-entered while it waits on the API).
        var volumesBusy = false
        /// After a failed set-up: not before then.
        var volumesRetryAt: ContinuousClock.Instant?
        var volumeFailures = 0
        var emptyDirCheckedAt: ContinuousClock.Instant?
        /// Why the pod was stopped for good (an emptyDir over its sizeLimit, its activeDeadlineSeconds
        /// passed): it stays Failed, with `failedReason`.
        var evicted: String?
        var failedReason = "Evicted"
        /// Every init container succeeded (sidecars: started): the pod's containers may run. Once
        /// true it stays so (a sidecar that exits later is restarted beside them).
        var initialized = false
    }

    let configuration: NodeAgent.Configuration
    let client: APIClient
    let runtime: any ContainerRuntime
    let logger: Logger
    /// The pods' volumes on the node (`DATA/pod-data/UID/volumes/…`).
    let volumes: PodVolumes
    var pods: [String: PodState] = [:]  // by uid
    var adopted = false
    /// Container starts under way, and those waiting for one of `maxParallelStarts` turns: a
    /// runtime asked to make a hundred sandboxes at once on two cores times them all out.
    var startsRunning = 0
    var startsWaiting: [CheckedContinuation<Void, Never>] = []
    /// When runtime objects of no known pod were last looked for.
    var lastSweep = ContinuousClock.now
    /// Statuses to write, by pod uid (the newest wins).
    var pendingStatus: [String: (namespace: String, name: String, status: PodStatus)] = [:]
    var statusSignal: AsyncStream<Void>.Continuation
    let statusWakeups: AsyncStream<Void>

    /// Events about pods and their containers, in the kubelet's reasons and words (nil: none).
    let recorder: EventRecorder?

    init(configuration: NodeAgent.Configuration, client: APIClient, runtime: any ContainerRuntime, logger: Logger, recorder: EventRecorder? = nil) {
        self.configuration = configuration
        self.client = client
        self.runtime = runtime
        self.logger = logger
        self.recorder = recorder
        // Not DATA/pods: that is the CRI log root (NAMESPACE_NAME_UID directories).
        self.volumes = PodVolumes(root: URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.appendingPathComponent("pod-data").path)
        (statusWakeups, statusSignal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Inputs

    /// Takes the pod's newest version. `background`: its containers start on a task of their own,
    /// so the watch that brought it goes on to the next pod (a start through CRI is several round
    /// trips; pods created together start together). A pod's own sync never runs twice at once:
    /// each container's `starting` says a start is under way.
    func upsert(_ pod: Pod, background: Bool = false) async {
        let uid = pod.metadata.uid
        if pods[uid] == nil {
            let startTime = pod.status.hasStartTime ? pod.status.startTime : Timestamp(wholeSecondsOf: Date())
            var state = PodState(pod: pod, startTime: startTime)
            state.lastReported = pod.status
            // Counts survive an agent restart through the status the last agent reported.
            for status in pod.status.containerStatuses + pod.status.initContainerStatuses {
                state.tracks[status.name, default: Track()].restartCount = status.restartCount
            }
            Self.restoreInitialization(&state)
            pods[uid] = state
            await adoptRunning(uid)
        } else {
            pods[uid]!.pod = pod
        }
        if background {
            Task { await self.sync(uid) }
        } else {
            await sync(uid)
        }
    }

    func deleted(_ pod: Pod) async {
        let uid = pod.metadata.uid
        guard let state = pods[uid] else { return }
        pods[uid]!.terminating = true
        let grace = Duration.seconds(pod.metadata.hasDeletionGracePeriodSeconds ? pod.metadata.deletionGracePeriodSeconds : 30)
        await stopAll(state, grace: grace)
        pods[uid] = nil
        pendingStatus[uid] = nil
        await runtime.cleanup(podUID: uid)
        tearDownVolumes(uid, state.pod)
    }

    /// After a (re-)list: pods no longer bound here are gone; containers of no known pod are orphans.
    func relisted(_ list: [Pod]) async {
        let listed = Set(list.map(\.metadata.uid))
        for (uid, state) in pods where !listed.contains(uid) { await deleted(state.pod) }
        for pod in list { await upsert(pod) }
        if !adopted {
            adopted = true
            for container in await runtime.list() where !listed.contains(container.launch.podUID) {
                if container.isRunning {
                    logger.warning("stopping an orphaned container (its pod is gone)", metadata: ["pod": "\(container.launch.namespace)/\(container.launch.podName)", "container": "\(container.launch.container)"])
                    await runtime.stop(id: container.id, grace: .seconds(5))
                }
                await runtime.cleanup(podUID: container.launch.podUID)
            }
            // Sandboxes left without containers (a pod deleted while the agent was away).
            if let cri = runtime as? CRIRuntime { await cri.removeSandboxes(except: listed) }
            removeOrphanedVolumes(except: listed)
        }
    }

    func containerExited(id: String) async {
        guard let (uid, name) = owner(of: id), let container = await runtime.status(id: id) else { return }
        pods[uid]?.tracks[name]?.current = container
        await sync(uid)
    }

    /// Backoffs expire and status timestamps move on without any event: look once a second.
    func runTicker() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            for uid in pods.keys {
                await sync(uid)
                startDueProbes(uid)
            }
            if adopted, ContinuousClock.now - lastSweep > configuration.orphanSweepInterval {
                lastSweep = ContinuousClock.now
                await sweepOrphans()
            }
        }
    }

    func takeStartTurn() async {
        if startsRunning < max(1, configuration.maxParallelStarts) {
            startsRunning += 1
            return
        }
        await withCheckedContinuation { startsWaiting.append($0) }
    }

    func releaseStartTurn() {
        if startsWaiting.isEmpty {
            startsRunning -= 1
        } else {
            startsWaiting.removeFirst().resume()  // the turn passes on
        }
    }

    /// Sandboxes of pods this agent no longer has (a start that timed out on the agent's side but
    /// went on in the runtime, a deletion that raced a start): removed, as the kubelet's garbage
    /// collection does, so nothing is left running without a pod.
    func sweepOrphans() async {
        removeOrphanedVolumes(except: Set(pods.keys))
        guard let cri = runtime as? CRIRuntime else { return }
        await cri.removeSandboxes(except: Set(pods.keys))
    }

    // MARK: - Probes

    /// Starts each probe whose time has come: startup first; liveness and readiness once it passed.
    func startDueProbes(_ uid: String) {
        guard let state = pods[uid], !state.terminating else { return }
        let now = Date()
        for container in state.pod.spec.containers + state.pod.spec.initContainers.filter(\.isSidecar) {
            guard let track = state.tracks[container.name], let current = track.current, current.isRunning else { continue }
            let startupPassed = !container.hasStartupProbe || track.probes.startupPassed
            let probes: [(Prober.Kind, Probe)] = (container.hasStartupProbe && !track.probes.startupPassed ? [(.startup, container.startupProbe)] : [])
                + (startupPassed && container.hasLivenessProbe ? [(.liveness, container.livenessProbe)] : [])
                + (startupPassed && container.hasReadinessProbe ? [(.readiness, container.readinessProbe)] : [])
            for (kind, probe) in probes {
                guard !track.probes.inFlight.contains(kind),
                      now.timeIntervalSince(current.startedAt) >= Double(probe.initialDelaySeconds) else { continue }
                if let last = track.probes.lastRun[kind], now.timeIntervalSince(last) < Double(max(probe.periodSeconds, 1)) - 0.05 { continue }
                pods[uid]!.tracks[container.name]!.probes.inFlight.insert(kind)
                pods[uid]!.tracks[container.name]!.probes.lastRun[kind] = now
                // HTTP and TCP probes go to the pod's own address (its sandbox's), or to the node's
                // for pods on the node's network; exec probes run in the container, through the
                // runtime (CRI's ExecSync), as the kubelet runs them.
                let host = address(of: state)
                let runtime = self.runtime, id = current.id
                Task {
                    let success = await Prober.run(probe, container: container, host: host) { command, timeout in
                        guard let result = try? await runtime.execSync(id: id, command: command, timeout: timeout) else { return false }
                        return result.exitCode == 0
                    }
                    await self.probed(uid, container: container.name, id: current.id, kind: kind, probe: probe, success: success)
                }
            }
        }
    }

    /// Where HTTP and TCP probes and hooks reach the pod: its sandbox's own address, or the node's
    /// for pods on the node's network.
    func address(of state: PodState) -> String {
        guard !state.pod.spec.hostNetwork, let ip = state.podIP, !ip.isEmpty else { return configuration.address }
        return ip
    }

    func probed(_ uid: String, container name: String, id: String, kind: Prober.Kind, probe: Probe, success: Bool) async {
        guard var track = pods[uid]?.tracks[name], track.current?.id == id else { return }
        track.probes.inFlight.remove(kind)
        if success {
            track.probes.successes[kind, default: 0] += 1
            track.probes.failures[kind] = 0
        } else {
            track.probes.failures[kind, default: 0] += 1
            track.probes.successes[kind] = 0
        }
        let failures = track.probes.failures[kind] ?? 0
        let successes = track.probes.successes[kind] ?? 0
        let failureThreshold = Int(max(probe.failureThreshold, 1))
        var kill = false
        switch kind {
        case .startup:
            if success { track.probes.startupPassed = true } else if failures >= failureThreshold { kill = true }
            // A sidecar's start lets the next init container run: at once, not at the next tick.
            if success, pods[uid]?.initialized == false {
                pods[uid]?.tracks[name] = track
                await sync(uid)
                return
            }
        case .liveness:
            if failures >= failureThreshold { kill = true }
        case .readiness:
            if successes >= Int(max(probe.successThreshold, 1)) { track.probes.ready = true }
            if failures >= failureThreshold { track.probes.ready = false }
        }
        pods[uid]?.tracks[name] = track
        if !success, let pod = pods[uid]?.pod {
            event(pod, container: name, .warning, "Unhealthy", "\(kind.rawValue.prefix(1).uppercased() + kind.rawValue.dropFirst()) probe failed")
        }
        if kill, let pod = pods[uid]?.pod {
            logger.info("\(kind.rawValue) probe failed \(failures) times: restarting the container", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(name)"])
            event(pod, container: name, .normal, "Killing", "Container \(name) failed \(kind.rawValue) probe, will be restarted")
            pods[uid]?.tracks[name]?.probes = ProbeState()
            // The probe's own grace period, when it has one, over the pod's (as Kubernetes does).
            let grace = probe.hasTerminationGracePeriodSeconds ? .seconds(probe.terminationGracePeriodSeconds) : pod.spec.terminationGrace
            let spec = pod.spec.allContainers.first { $0.name == name }
            Task { await self.stopContainer(id, spec: spec, pod: pod, grace: grace) }
        }
        report(uid)
    }

    /// An event about a pod's container (`spec.containers{NAME}`), as the kubelet records them.
    nonisolated func event(_ pod: Pod, container: String?, _ type: EventRecorder.EventType, _ reason: String, _ message: String) {
        guard let recorder else { return }
        var reference = ObjectReference()
        reference.apiVersion = "v1"
        reference.kind = "Pod"
        reference.namespace = pod.metadata.namespace
        reference.name = pod.metadata.name
        reference.uid = pod.metadata.uid
        reference.resourceVersion = pod.metadata.resourceVersion
        if let container {
            let list = pod.spec.initContainers.contains { $0.name == container } ? "initContainers" : "containers"
            reference.fieldPath = "spec.\(list){\(container)}"
        }
        recorder.record(reference, type, reason: reason, message: message)
    }

    func owner(of id: String) -> (String, String)? {
        for (uid, state) in pods {
            for (name, track) in state.tracks where track.current?.id == id { return (uid, name) }
        }
        return nil
    }

    /// Running containers recorded by an earlier agent for this pod become its current ones.
    func adoptRunning(_ uid: String) async {
        for container in await runtime.list() where container.launch.podUID == uid && container.isRunning {
            guard pods[uid]?.tracks[container.launch.container]?.current == nil else { continue }
            pods[uid]?.tracks[container.launch.container, default: Track()].current = container
            logger.info("re-adopted a running container", metadata: ["pod": "\(container.launch.namespace)/\(container.launch.podName)", "container": "\(container.launch.container)", "id": "\(container.id)"])
        }
    }

    // MARK: - Sync

    func sync(_ uid: String) async {
        guard let state = pods[uid], !state.terminating else { return }
        let pod = state.pod
        if pod.metadata.hasDeletionTimestamp {
            pods[uid]!.terminating = true
            let grace = Duration.seconds(pod.metadata.hasDeletionGracePeriodSeconds ? pod.metadata.deletionGracePeriodSeconds : 30)
            Task { await self.terminate(uid, grace: grace) }
            return
        }
        // A pod that finished before this agent started (its status says so) is not run again.
        if pod.status.phase == "Succeeded" || pod.status.phase == "Failed",
           !state.tracks.values.contains(where: { $0.current != nil || $0.starting }) {
            return
        }
        if state.evicted != nil { return }
        // activeDeadlineSeconds, counted from the pod's start on the node, as the kubelet counts it.
        if pod.spec.hasActiveDeadlineSeconds,
           Date().timeIntervalSince(state.startTime.date) >= Double(pod.spec.activeDeadlineSeconds) {
            let grace = pod.spec.terminationGrace
            await evict(uid, reason: "DeadlineExceeded", message: "Pod was active on the node longer than the specified deadline", grace: grace)
            return
        }
        if !pod.spec.volumes.isEmpty {
            await syncVolumes(uid)
            guard let state = pods[uid], !state.terminating, state.evicted == nil else { return }
            if state.volumePaths == nil {
                report(uid)  // the containers wait, ContainerCreating, until every volume is there
                return
            }
        }
        let restarts: (Int32) -> Bool = switch pod.spec.restartPolicy {
        case "Never": { _ in false }
        case "OnFailure": { $0 != 0 }
        default: { _ in true }
        }
        guard await initialize(uid) else {
            report(uid)
            return
        }
        for container in pod.spec.containers {
            guard await advance(uid, container, restarts: restarts) else { return }
        }
        // Sidecars run as long as the pod's containers do: restarted whenever they exit, and
        // stopped once every container is done for good (a Job's pod completes).
        let finished = pod.spec.containers.allSatisfy { pods[uid]?.tracks[$0.name]?.done == true }
        for sidecar in pod.spec.initContainers where sidecar.isSidecar {
            if finished {
                finishSidecar(uid, sidecar)
            } else {
                guard await advance(uid, sidecar, restarts: { _ in true }) else { return }
            }
        }
        report(uid)
    }

    /// Runs the init containers in order, each once it is the first not done: true once every one
    /// succeeded (sidecars: started). A failed one restarts after its back-off unless the pod's
    /// restartPolicy is Never (the pod then fails).
    func initialize(_ uid: String) async -> Bool {
        guard let state = pods[uid] else { return false }
        if state.initialized { return true }
        let pod = state.pod
        let restarts: (Int32) -> Bool = pod.spec.restartPolicy == "Never" ? { _ in false } : { $0 != 0 }
        func done(_ container: Container) -> Bool {
            guard let track = pods[uid]?.tracks[container.name] else { return false }
            return container.isSidecar ? track.started(container) : track.succeeded
        }
        for container in pod.spec.initContainers where !done(container) {
            // Twice: one that exited at once is seen exited by its start, and taken as done (or
            // backed off) by the second look rather than a tick later.
            for _ in 0..<2 where !done(container) {
                guard await advance(uid, container, restarts: container.isSidecar ? { _ in true } : restarts) else { return false }
            }
            if !done(container) { return false }
        }
        pods[uid]?.initialized = true
        return true
    }

    /// Stops a sidecar for good once the pod's containers are done.
    func finishSidecar(_ uid: String, _ sidecar: Container) {
        guard let state = pods[uid], var track = state.tracks[sidecar.name], !track.done, !track.starting else { return }
        track.done = true
        pods[uid]?.tracks[sidecar.name] = track
        guard let current = track.current, current.isRunning else { return }
        event(state.pod, container: sidecar.name, .normal, "Killing", "Stopping container \(sidecar.name)")
        let grace = state.pod.spec.terminationGrace
        Task { await self.stopContainer(current.id, spec: sidecar, pod: state.pod, grace: grace) }
    }

    /// After an agent restart, init containers the last agent saw succeed are not run again: all
    /// of them once it reported the pod Initialized (or a container of the pod's own), else those
    /// whose status says they exited with 0.
    static func restoreInitialization(_ state: inout PodState) {
        let pod = state.pod
        guard !pod.spec.initContainers.isEmpty else {
            state.initialized = true
            return
        }
        let initialized = pod.status.conditions.contains { $0.type == "Initialized" && $0.status == "True" }
            || pod.status.containerStatuses.contains { !$0.containerID.isEmpty }
        for container in pod.spec.initContainers where !container.isSidecar {
            let status = pod.status.initContainerStatuses.first { $0.name == container.name }
            let succeeded = status.map { $0.state.hasTerminated && $0.state.terminated.exitCode == 0 } ?? false
            guard initialized || succeeded else { continue }
            var restored = status ?? ContainerStatus()
            if !succeeded {
                restored.name = container.name
                restored.image = container.image
                restored.state = ContainerState()
                restored.state.terminated.exitCode = 0
                restored.state.terminated.reason = "Completed"
            }
            state.tracks[container.name, default: Track()].done = true
            state.tracks[container.name]!.restored = restored
        }
        state.initialized = initialized
    }

    /// One container's next step: after an exit, a restart (once its back-off is over) when
    /// `restarts(exitCode)` says so, else done; without an instance, a start. False: the pod went
    /// meanwhile.
    func advance(_ uid: String, _ container: Container, restarts: (Int32) -> Bool) async -> Bool {
        guard let pod = pods[uid]?.pod else { return false }
        let now = ContinuousClock.now
        var track = pods[uid]!.tracks[container.name] ?? Track()
        if track.starting || track.done { return true }
        if let current = track.current {
            guard case .exited(let code, _, _, let finishedAt) = current.state else {
                // Running: ten minutes without a crash forgives earlier ones.
                if track.crashes > 0, Date().timeIntervalSince(current.startedAt) > 600 { track.crashes = 0 }
                pods[uid]!.tracks[container.name] = track
                return true
            }
            let restart = restarts(code)
            if !restart {
                track.done = true
                pods[uid]!.tracks[container.name] = track
                return true
            }
            if track.backoffUntil == nil {
                // Crashes close together back off (ten minutes of running forgives).
                let ranFor = finishedAt.timeIntervalSince(current.startedAt)
                track.crashes = ranFor > 600 ? 1 : track.crashes + 1
                track.backoffDelay = crashDelay(after: track.crashes)
                track.backoffUntil = now + track.backoffDelay
            }
            if let until = track.backoffUntil, until > now {
                if !track.backoffReported {
                    track.backoffReported = true
                    event(pod, container: container.name, .warning, "BackOff",
                          "Back-off restarting failed container \(container.name) in pod \(pod.metadata.name)_\(pod.metadata.namespace)(\(pod.metadata.uid))")
                }
                pods[uid]!.tracks[container.name] = track
                return true
            }
            track.backoffReported = false
            track.previous = current
            track.current = nil
            track.backoffUntil = nil
            track.restartCount += 1
        } else if let until = track.backoffUntil, until > now {
            pods[uid]!.tracks[container.name] = track
            return true  // a start that failed waits too
        }
        track.starting = true
        pods[uid]!.tracks[container.name] = track
        var launch = Self.launch(pod, container)
        do {
            launch.environment = try await environment(pod, container)
            if !container.volumeMounts.isEmpty {
                launch.mounts = try PodVolumes.mounts(for: container, volumes: pods[uid]?.volumePaths ?? [:], environment: launch.environment)
            }
            pods[uid]?.tracks[container.name]?.configError = false
        } catch {
            // A missing ConfigMap, Secret or key: tried again after a back-off, as the kubelet does.
            logger.warning("container environment cannot be resolved", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(container.name)", "error": "\(error)"])
            pods[uid]?.tracks[container.name]?.startError = "\(error)"
            pods[uid]?.tracks[container.name]?.configError = true
            pods[uid]?.tracks[container.name]?.backoffUntil = ContinuousClock.now + configuration.crashLoopBase
            pods[uid]?.tracks[container.name]?.starting = false
            return true
        }
        do {
            await takeStartTurn()
            let started: RuntimeContainer
            do {
                started = try await runtime.start(launch)
                releaseStartTurn()
            } catch {
                releaseStartTurn()
                throw error
            }
            guard let now = pods[uid], !now.terminating else {
                // Deleted while it started: stopped now, not left running without a pod.
                logger.info("the pod went while its container started; stopping it", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(container.name)"])
                await runtime.stop(id: started.id, grace: pod.spec.terminationGrace)
                // (Read before the assignment: `pods[uid]?.… = await …` would hold a write
                // access to `pods` across the suspension — the optional chain starts it before
                // its right side runs — and other code of this actor changes `pods` meanwhile;
                // AddressSanitizer caught the write landing in a freed dictionary buffer.)
                let final = pods[uid] == nil ? nil : await runtime.status(id: started.id)
                if pods[uid] == nil { await runtime.cleanup(podUID: uid) } else { pods[uid]?.tracks[container.name]?.current = final ?? started }
                return false
            }
            pods[uid]?.tracks[container.name]?.current = started
            event(pod, container: container.name, .normal, "Created", "Created container \(container.name)")
            event(pod, container: container.name, .normal, "Started", "Started container \(container.name)")
            pods[uid]?.tracks[container.name]?.probes = ProbeState()
            pods[uid]?.tracks[container.name]?.startError = nil
            pods[uid]?.tracks[container.name]?.startReason = nil
            // The sandbox's address (a new sandbox has a new one); "" on the node's network.
            if let ip = await runtime.podIP(podUID: uid) { pods[uid]?.podIP = ip }
            // A container that exits at once may have done so before this start returned: its
            // exit then came when no track named it as current, and was dropped. Ask once
            // more now that one does (later exits find it).
            if let now = await runtime.status(id: started.id), !now.isRunning,
               pods[uid]?.tracks[container.name]?.current?.id == started.id {
                pods[uid]?.tracks[container.name]?.current = now
            }
            // postStart: the container counts as started once its hook is done; a failed hook
            // stops it (the restart policy then decides), as the kubelet does.
            if container.hasLifecycle && container.lifecycle.hasPostStart,
               let failure = await runHook(container.lifecycle.postStart, container: container, id: started.id, pod: pod, timeout: Self.postStartTimeout) {
                logger.warning("postStart hook failed", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(container.name)", "error": "\(failure)"])
                event(pod, container: container.name, .warning, "FailedPostStartHook", failure)
                let grace = pod.spec.terminationGrace
                await stopContainer(started.id, spec: container, pod: pod, grace: grace)
            }
        } catch {
            logger.warning("container failed to start", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(container.name)", "error": "\(error)"])
            pods[uid]?.tracks[container.name]?.startError = "\(error)"
            pods[uid]?.tracks[container.name]?.startReason = (error as? RuntimeError)?.reason
            let reason = (error as? RuntimeError)?.reason ?? "Failed"
            let message = (error as? RuntimeError)?.message ?? "\(error)"
            switch reason {
            case "ErrImagePull":
                event(pod, container: container.name, .warning, "Failed", "Failed to pull image \"\(container.image)\": \(message)")
                event(pod, container: container.name, .warning, "Failed", "Error: ErrImagePull")
                event(pod, container: container.name, .normal, "BackOff", "Back-off pulling image \"\(container.image)\"")
            case "ErrImageNeverPull":
                event(pod, container: container.name, .warning, "ErrImageNeverPull", message)
            case "FailedCreatePodSandBox":
                event(pod, container: nil, .warning, "FailedCreatePodSandBox", "Failed to create pod sandbox: \(message)")
            default:
                event(pod, container: container.name, .warning, "Failed", "Error: \(message)")
            }
            pods[uid]?.tracks[container.name]?.crashes += 1
            let crashes = pods[uid]?.tracks[container.name]?.crashes ?? 1
            pods[uid]?.tracks[container.name]?.backoffUntil = ContinuousClock.now + crashDelay(after: crashes)
        }
        pods[uid]?.tracks[container.name]?.starting = false
        return true
    }

    /// How long a postStart hook may run before it counts as failed (Kubernetes sets no bound: a
    /// hook that never ends holds the container back for ever).
    static let postStartTimeout: Duration = .seconds(120)

    /// The wait before restarting after `crashes` crashes in a row: base · 2^(n-1), capped.
    func crashDelay(after crashes: Int) -> Duration {
        var delay = configuration.crashLoopBase
        for _ in 1..<max(crashes, 1) where delay < configuration.crashLoopMax { delay *= 2 }
        return min(delay, configuration.crashLoopMax)
    }

    /// The container's environment: `envFrom` (in order, each key with its prefix), then `env`
    /// (a literal value, or from a pod field, a container resource, a ConfigMap or Secret key).
    /// A missing ConfigMap, Secret or key that is not `optional` is an error, in the kubelet's words.
    func environment(_ pod: Pod, _ container: Container) async throws -> [String: String] {
        let namespace = pod.metadata.namespace
        // A ConfigMap's data or a Secret's (decoded), nil when there is no such object.
        func values(_ secret: Bool, _ name: String) async throws -> [String: String]? {
            if secret {
                return try await fetch(Secret.self, namespace: namespace, name: name)?.data
                    .mapValues { Data(base64Encoded: $0).map { String(decoding: $0, as: UTF8.self) } ?? "" }
            }
            return try await fetch(ConfigMap.self, namespace: namespace, name: name)?.data
        }
        func kind(_ secret: Bool) -> String { secret ? "secret" : "configmap" }
        var environment: [String: String] = [:]
        for source in container.envFrom where source.hasConfigMapRef || source.hasSecretRef {
            let secret = source.hasSecretRef
            let (name, optional) = secret ? (source.secretRef.name, source.secretRef.optional) : (source.configMapRef.name, source.configMapRef.optional)
            guard let data = try await values(secret, name) else {
                if optional { continue }
                throw EnvSources.ConfigError("\(kind(secret)) \"\(name)\" not found")
            }
            for (key, value) in data { environment[source.prefix + key] = value }
        }
        for variable in container.env {
            guard variable.hasValueFrom else { environment[variable.name] = variable.value; continue }
            let from = variable.valueFrom
            if from.hasFieldRef {
                environment[variable.name] = try EnvSources.field(from.fieldRef.fieldPath, of: pod)
            } else if from.hasResourceFieldRef {
                let named = from.resourceFieldRef.containerName
                let target = named.isEmpty ? container : pod.spec.allContainers.first { $0.name == named } ?? container
                environment[variable.name] = try EnvSources.resource(from.resourceFieldRef, of: target)
            } else if from.hasConfigMapKeyRef || from.hasSecretKeyRef {
                let secret = from.hasSecretKeyRef
                let (name, key, optional) = secret
                    ? (from.secretKeyRef.name, from.secretKeyRef.key, from.secretKeyRef.optional)
                    : (from.configMapKeyRef.name, from.configMapKeyRef.key, from.configMapKeyRef.optional)
                guard let data = try await values(secret, name) else {
                    if optional { continue }
                    throw EnvSources.ConfigError("\(kind(secret)) \"\(name)\" not found")
                }
                guard let value = data[key] else {
                    if optional { continue }
                    throw EnvSources.ConfigError("couldn't find key \(key) in \(secret ? "Secret" : "ConfigMap") \(namespace)/\(name)")
                }
                environment[variable.name] = value
            }
        }
        return environment
    }

    /// The object, or nil when there is none.
    func fetch<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> T? {
        do { return try await client.get(T.self, namespace: namespace, name: name) } catch let error as ClientError where error.code == 404 { return nil }
    }

    static func launch(_ pod: Pod, _ container: Container) -> ContainerLaunch {
        var environment: [String: String] = [:]
        for variable in container.env { environment[variable.name] = variable.value }
        var launch = ContainerLaunch(podUID: pod.metadata.uid, namespace: pod.metadata.namespace, podName: pod.metadata.name,
                                     container: container.name, command: container.command,
                                     environment: environment, workingDirectory: container.workingDir.isEmpty ? nil : container.workingDir)
        launch.args = container.args
        launch.image = container.image
        launch.imagePullPolicy = container.imagePullPolicy
        launch.hostNetwork = pod.spec.hostNetwork
        if container.stdin || container.stdinOnce || container.tty {
            launch.terminal = ContainerLaunch.Terminal(stdin: container.stdin, stdinOnce: container.stdinOnce, tty: container.tty)
        }
        if let memory = container.resources.limits["memory"], let bytes = try? Quantity(parsing: memory).value {
            launch.memoryLimitBytes = NSDecimalNumber(decimal: bytes).int64Value
        }
        if let cpu = container.resources.limits["cpu"], let cores = try? Quantity(parsing: cpu).value {
            launch.cpuLimitMillis = NSDecimalNumber(decimal: cores * 1000).int64Value
        }
        if let cpu = container.resources.requests["cpu"], let cores = try? Quantity(parsing: cpu).value {
            launch.cpuRequestMillis = NSDecimalNumber(decimal: cores * 1000).int64Value
        }
        launch.security = security(pod, container)
        return launch
    }

    /// The pod's securityContext with the container's over it, as the kubelet merges them; nil
    /// when neither asks anything.
    static func security(_ pod: Pod, _ container: Container) -> ContainerLaunch.Security? {
        guard pod.spec.hasSecurityContext || container.hasSecurityContext else { return nil }
        let podLevel = pod.spec.securityContext, own = container.securityContext
        var security = ContainerLaunch.Security()
        security.runAsUser = own.hasRunAsUser ? own.runAsUser : podLevel.hasRunAsUser ? podLevel.runAsUser : nil
        security.runAsGroup = own.hasRunAsGroup ? own.runAsGroup : podLevel.hasRunAsGroup ? podLevel.runAsGroup : nil
        security.runAsNonRoot = own.hasRunAsNonRoot ? own.runAsNonRoot : podLevel.runAsNonRoot
        security.privileged = own.privileged
        security.readOnlyRootFilesystem = own.readOnlyRootFilesystem
        security.noNewPrivileges = own.hasAllowPrivilegeEscalation && !own.allowPrivilegeEscalation
        security.addCapabilities = own.capabilities.add
        security.dropCapabilities = own.capabilities.drop
        security.supplementalGroups = podLevel.supplementalGroups
        return security == ContainerLaunch.Security() ? nil : security
    }

    // MARK: - Deletion

    func stopAll(_ state: PodState, grace: Duration) async {
        // What to stop is taken out of the pod's state first: the group's body and its child
        // tasks see only these values (AddressSanitizer caught the body reading the state's
        // tracks after another copy of the state was freed).
        let running = state.tracks.values.compactMap(\.current).filter(\.isRunning)
        for container in running {
            event(state.pod, container: container.launch.container, .normal, "Killing", "Stopping container \(container.launch.container)")
        }
        // Sidecars last, as the kubelet stops them: with what is left of the grace period once
        // the others have stopped (at least 2 s, or the whole of a shorter one).
        let sidecarNames = Set(state.pod.spec.initContainers.filter(\.isSidecar).map(\.name))
        let sidecars = running.filter { sidecarNames.contains($0.launch.container) }.map(\.id)
        let others = running.filter { !sidecarNames.contains($0.launch.container) }.map(\.id)
        let pod = state.pod
        let specs = Dictionary(pod.spec.allContainers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let names = Dictionary(running.map { ($0.id, $0.launch.container) }, uniquingKeysWith: { first, _ in first })
        let began = ContinuousClock.now
        for (ids, budget) in [(others, grace), (sidecars, nil)] where !ids.isEmpty {
            let wait = budget ?? max(grace - (ContinuousClock.now - began), min(grace, .seconds(2)))
            await withTaskGroup(of: Void.self) { group in
                for id in ids {
                    let spec = names[id].flatMap { specs[$0] }
                    group.addTask { await self.stopContainer(id, spec: spec, pod: pod, grace: wait) }
                }
            }
        }
    }

    /// Stops one container as the kubelet does: its preStop hook first, within the grace period,
    /// then SIGTERM with what is left of it (at least 2 s), SIGKILL after that.
    func stopContainer(_ id: String, spec: Container?, pod: Pod, grace: Duration) async {
        var left = grace
        if let spec, spec.hasLifecycle, spec.lifecycle.hasPreStop, grace > .zero {
            let began = ContinuousClock.now
            if let failure = await runHook(spec.lifecycle.preStop, container: spec, id: id, pod: pod, timeout: grace) {
                logger.warning("preStop hook failed", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "container": "\(spec.name)", "error": "\(failure)"])
                event(pod, container: spec.name, .warning, "FailedPreStopHook", failure)
            }
            left = max(grace - (ContinuousClock.now - began), .seconds(2))
        }
        await runtime.stop(id: id, grace: left)
    }

    /// Runs one of a container's hooks within `timeout`: a command in the container (through the
    /// runtime), an HTTP GET to the pod, or a sleep. Nil when it succeeded; else what failed, in
    /// the kubelet's words.
    func runHook(_ handler: LifecycleHandler, container: Container, id: String, pod: Pod, timeout: Duration) async -> String? {
        let subject = "for Container \"\(container.name)\" in Pod \"\(pod.metadata.name)_\(pod.metadata.namespace)(\(pod.metadata.uid))\""
        if handler.hasExec {
            let command = handler.exec.command
            let shown = "[\(command.joined(separator: " "))]"
            do {
                let result = try await runtime.execSync(id: id, command: command, timeout: timeout)
                if result.exitCode == 0 { return nil }
                let output = String(decoding: result.stdout + result.stderr, as: UTF8.self)
                return "Exec lifecycle hook (\(shown)) \(subject) failed - error: command '\(command.joined(separator: " "))' exited with \(result.exitCode): , message: \"\(output)\""
            } catch {
                return "Exec lifecycle hook (\(shown)) \(subject) failed - error: \(error)"
            }
        }
        if handler.hasHTTPGet {
            let action = handler.httpGet
            guard let port = Prober.port(action.port, container) else {
                return "HTTP lifecycle hook (\(action.path)) \(subject) failed - error: no port \(action.port.displayString) in the container"
            }
            let host = action.host.isEmpty ? pods[pod.metadata.uid].map(address(of:)) ?? configuration.address : action.host
            let ok = await Prober.httpGet(scheme: action.scheme, host: host, port: port, path: action.path, headers: action.httpHeaders,
                                          timeout: Double(timeout.components.seconds))
            return ok ? nil : "HTTP lifecycle hook (\(action.path)) \(subject) failed - error: no success from http://\(host):\(port)\(action.path)"
        }
        if handler.hasSleep {
            try? await Task.sleep(for: min(.seconds(handler.sleep.seconds), timeout))
        }
        return nil
    }

    /// Stops every container within the grace period, reports them terminated, then deletes the pod
    /// for good (grace 0), which the watch reports as DELETED.
    func terminate(_ uid: String, grace: Duration) async {
        guard let state = pods[uid] else { return }
        let pod = state.pod
        logger.info("stopping pod", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "grace": "\(grace)"])
        await stopAll(state, grace: grace)
        for (name, track) in state.tracks {
            if let id = track.current?.id, let final = await runtime.status(id: id) { pods[uid]?.tracks[name]?.current = final }
        }
        // The sandbox (and its network) goes before the pod does, as the kubelet stops it: once
        // the pod is gone nothing of it runs, even if this agent stops right after.
        await runtime.cleanup(podUID: uid)
        tearDownVolumes(uid, pod)
        var backoff = Backoff(base: .milliseconds(200), cap: .seconds(10))
        while pods[uid] != nil && !Task.isCancelled {
            do {
                _ = try await client.delete(Pod.self, namespace: pod.metadata.namespace, name: pod.metadata.name, gracePeriodSeconds: 0)
                break
            } catch let error as ClientError where error.code == 404 {
                break
            } catch {
                logger.warning("cannot finalize the pod's deletion; retrying", metadata: ["pod": "\(pod.metadata.name)", "error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    // MARK: - Status

    func report(_ uid: String) {
        guard let state = pods[uid] else { return }
        var status = Self.status(of: state, hostIP: configuration.address, podIP: state.podIP, now: ContinuousClock.now)
        // Container IDs as Kubernetes shows them: RUNTIME://ID (containerd://…, cox-process://…).
        let runtimeName = runtime.name
        func qualified(_ id: String) -> String { id.isEmpty || id.contains("://") ? id : "\(runtimeName)://\(id)" }
        func qualify(_ statuses: inout [ContainerStatus]) {
            for index in statuses.indices {
                statuses[index].containerID = qualified(statuses[index].containerID)
                if statuses[index].state.hasTerminated {
                    statuses[index].state.terminated.containerID = qualified(statuses[index].state.terminated.containerID)
                }
                if statuses[index].lastState.hasTerminated {
                    statuses[index].lastState.terminated.containerID = qualified(statuses[index].lastState.terminated.containerID)
                }
            }
        }
        qualify(&status.containerStatuses)
        qualify(&status.initContainerStatuses)
        if let last = state.lastReported, Self.sameStatus(last, status) { return }
        pods[uid]!.lastReported = status
        pendingStatus[uid] = (state.pod.metadata.namespace, state.pod.metadata.name, status)
        statusSignal.yield()
    }

    /// Statuses are compared without their timestamps of observation.
    static func sameStatus(_ a: PodStatus, _ b: PodStatus) -> Bool {
        a.jsonString() == b.jsonString()
    }

    func takePending() -> [(uid: String, namespace: String, name: String, status: PodStatus)] {
        defer { pendingStatus = [:] }
        return pendingStatus.map { ($0.key, $0.value.namespace, $0.value.name, $0.value.status) }
    }

    func requeue(_ uid: String, _ namespace: String, _ name: String, _ status: PodStatus) {
        if pendingStatus[uid] == nil, pods[uid] != nil { pendingStatus[uid] = (namespace, name, status) }
    }

    /// Writes statuses through `/status`, the newest per pod; failures stay queued (the server may
    /// be away) and are written when it is back.
    func runStatusWriter() async {
        var backoff = Backoff(base: .milliseconds(200), cap: .seconds(10))
        for await _ in statusWakeups {
            while !Task.isCancelled {
                let batch = takePending()
                if batch.isEmpty { break }
                // Up to 8 writes at once: a burst of new pods is reported in a few round trips.
                let client = self.client
                let failures = await withTaskGroup(of: (uid: String, namespace: String, name: String, status: PodStatus)?.self) { group in
                    var failures: [(uid: String, namespace: String, name: String, status: PodStatus)] = []
                    var inFlight = 0
                    for item in batch {
                        if inFlight >= 8, let finished = await group.next() {
                            inFlight -= 1
                            if let failure = finished { failures.append(failure) }
                        }
                        inFlight += 1
                        group.addTask {
                            var pod = Pod()
                            pod.metadata.name = item.name
                            pod.metadata.namespace = item.namespace
                            pod.status = item.status
                            do {
                                _ = try await client.updateStatus(pod)
                            } catch let error as ClientError where error.code == 404 {
                                return nil  // the pod is gone: nothing to report
                            } catch {
                                return item
                            }
                            return nil
                        }
                    }
                    for await finished in group { if let failure = finished { failures.append(failure) } }
                    return failures
                }
                for item in failures { requeue(item.uid, item.namespace, item.name, item.status) }
                let failed = !failures.isEmpty
                if failed { try? await Task.sleep(for: backoff.next()) } else { backoff.reset() }
            }
        }
    }

    static func status(of state: PodState, hostIP: String, podIP: String? = nil, now: ContinuousClock.Instant) -> PodStatus {
        let pod = state.pod
        var status = PodStatus()
        status.hostIp = hostIP
        // The node's address for pods on its network; none until a pod's own sandbox reports one.
        let address = pod.spec.hostNetwork || podIP == "" ? hostIP : podIP
        if let address {
            status.podIp = address
            var ip = PodIP()
            ip.ip = address
            status.podIps = [ip]
        }
        status.startTime = state.startTime
        // Init containers: not yet run, they wait PodInitializing; one that succeeded is ready.
        var initFailed = false, sidecarsReady = true
        var incomplete: [String] = []
        for container in pod.spec.initContainers {
            let track = state.tracks[container.name] ?? Track()
            var cs = containerStatus(container, track, pod: pod, now: now, notStarted: "PodInitializing")
            if container.isSidecar {
                if !cs.ready { sidecarsReady = false }
                if !track.started(container) && !state.initialized { incomplete.append(container.name) }
            } else {
                cs.ready = track.succeeded
                if !track.succeeded { incomplete.append(container.name) }
                if track.done && !track.succeeded { initFailed = true }
            }
            status.initContainerStatuses.append(cs)
        }
        var allStarted = true, anyRunning = false, allDone = true, anyFailed = false, allReady = sidecarsReady
        for container in pod.spec.containers {
            let track = state.tracks[container.name] ?? Track()
            let cs = containerStatus(container, track, pod: pod, now: now, notStarted: state.initialized ? "ContainerCreating" : "PodInitializing")
            if let current = track.current {
                if current.isRunning { anyRunning = true }
                if !track.done { allDone = false }
                if case .exited(let code, _, _, _) = current.state, code != 0 { anyFailed = true }
            } else {
                allStarted = false
                allDone = false
            }
            if !cs.ready { allReady = false }
            status.containerStatuses.append(cs)
        }
        if initFailed {
            status.phase = "Failed"
        } else if !state.initialized {
            status.phase = "Pending"
        } else if allDone && !pod.spec.containers.isEmpty {
            status.phase = anyFailed ? "Failed" : "Succeeded"
        } else if allStarted && (anyRunning || !allDone) {
            status.phase = "Running"
        } else {
            status.phase = "Pending"
        }
        if let evicted = state.evicted {
            status.phase = "Failed"
            status.reason = state.failedReason
            status.message = evicted
        }
        let previous = state.lastReported?.conditions ?? []
        func condition(_ type: String, _ value: Bool, reason: String = "", message: String = "") -> PodCondition {
            var c = PodCondition()
            c.type = type
            c.status = value ? "True" : "False"
            if !value {
                c.reason = reason
                c.message = message
            }
            let before = previous.first { $0.type == type }
            c.lastTransitionTime = before?.status == c.status && before!.hasLastTransitionTime ? before!.lastTransitionTime : Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanos: 0)
            return c
        }
        let ready = allReady && status.phase == "Running"
        let doneReason = status.phase == "Succeeded" || status.phase == "Failed" ? "PodCompleted" : "ContainersNotReady"
        let initialized = state.initialized || incomplete.isEmpty
        status.conditions = [
            condition("Initialized", initialized, reason: "ContainersNotInitialized",
                      message: "containers with incomplete status: [\(incomplete.joined(separator: " "))]"),
            condition("Ready", ready, reason: doneReason),
            condition("ContainersReady", ready, reason: doneReason),
            condition("PodScheduled", true),
        ]
        return status
    }

    /// One container's status from what this agent knows of it: running (started and ready by its
    /// probes), exited (or backing off before a restart), or waiting with the reason it is not
    /// running (`notStarted` when nothing went wrong yet).
    static func containerStatus(_ container: Container, _ track: Track, pod: Pod, now: ContinuousClock.Instant, notStarted: String) -> ContainerStatus {
        var cs = ContainerStatus()
        cs.name = container.name
        cs.image = container.image
        cs.restartCount = track.restartCount
        if let previous = track.previous { cs.lastState = terminatedState(previous) }
        if let current = track.current {
            cs.containerID = current.id
            switch current.state {
            case .running:
                cs.state.running.startedAt = Timestamp(wholeSecondsOf: current.startedAt)
                let started = !container.hasStartupProbe || track.probes.startupPassed
                cs.started = started
                cs.ready = started && (!container.hasReadinessProbe || track.probes.ready)
            case .exited:
                cs.started = false
                if let until = track.backoffUntil, until > now, !track.done {
                    cs.state.waiting.reason = "CrashLoopBackOff"
                    cs.state.waiting.message = "back-off \(seconds(track.backoffDelay)) restarting failed container=\(container.name) pod=\(pod.metadata.name)"
                    cs.lastState = terminatedState(current)
                } else {
                    cs.state = terminatedState(current)
                }
            }
        } else if let restored = track.restored {
            cs = restored
            cs.restartCount = track.restartCount
        } else {
            let backingOff = track.backoffUntil.map { $0 > now } ?? false
            if let error = track.startError { cs.state.waiting.message = error }
            switch track.startReason {
            case _ where track.startError == nil:
                cs.state.waiting.reason = notStarted
            case _ where track.configError:
                cs.state.waiting.reason = "CreateContainerConfigError"
            case "ErrImagePull"?:
                // As the kubelet: the failed pull, then the wait before the next one.
                cs.state.waiting.reason = backingOff ? "ImagePullBackOff" : "ErrImagePull"
                if backingOff { cs.state.waiting.message = "Back-off pulling image \"\(container.image)\"" }
            case "ErrImageNeverPull"?:
                cs.state.waiting.reason = "ErrImageNeverPull"
            case "FailedCreatePodSandBox"?:
                cs.state.waiting.reason = "ContainerCreating"
            case let reason? where reason.hasPrefix("CreateContainer"):
                // No container ran: the kubelet shows the failure itself between tries (its
                // back-off, and CrashLoopBackOff, are for containers that ran and exited).
                cs.state.waiting.reason = reason
            case let reason?:
                cs.state.waiting.reason = backingOff ? "CrashLoopBackOff" : reason
            case nil:
                cs.state.waiting.reason = backingOff ? "CrashLoopBackOff" : "RunContainerError"
            }
        }
        return cs
    }

    static func terminatedState(_ container: RuntimeContainer) -> ContainerState {
        var state = ContainerState()
        if case .exited(let code, let signal, let reason, let finishedAt) = container.state {
            state.terminated.exitCode = code
            state.terminated.signal = signal
            state.terminated.reason = reason
            state.terminated.startedAt = Timestamp(wholeSecondsOf: container.startedAt)
            state.terminated.finishedAt = Timestamp(wholeSecondsOf: finishedAt)
            state.terminated.containerID = container.id
        }
        return state
    }

    static func seconds(_ duration: Duration) -> String {
        let s = duration.components.seconds
        return s >= 60 && s % 60 == 0 ? "\(s / 60)m0s" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
