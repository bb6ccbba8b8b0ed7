/// The node agent: registers a node and runs its pods through a ContainerRuntime.
/// Built in issue #4; only its namespace exists so far.
public enum NodeAgentModule {
    public static let component = "agent"
}
