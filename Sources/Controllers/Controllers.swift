/// The built-in reconcilers (ReplicaSet, Deployment, node lifecycle, garbage collection).
/// Built in issue #5; only its namespace exists so far.
public enum ControllersModule {
    public static let component = "controllers"
}
