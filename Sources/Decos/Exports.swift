// `import Decos` is all a service author needs: the kernel's types, the infoset, the standard services.
@_exported import Infoset
@_exported import ServiceKernel
@_exported import StandardServices
