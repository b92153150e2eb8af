"""The MLflow model's code ("models from code"): MLflow copies this file into every logged
model and executes it to load one, instead of unpickling an object. Not imported by ali_dist.

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    out = model.predict(x)   # x: float32 (N, C, H, W) in [0, 1], or (N, 2) for the toy
    out["z"], out["reconstruction"]      # mean codes E(x) and G(E(x)); a GAN: {"x": G(z)}
    model.predict({"x": x, "y": y})      # a conditional model: y one-hot classes or 0/1
                                         # attributes, float32 (N, y_dim)
HALI: z is z2, the top latent, and the reconstruction passes through it.

The weights are the model's one artifact, the directory `ali_dist.load` reads (config.json +
weights.pt, loaded with weights_only=True); the signature is written by `tracking.log_model`.
"""
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ALIModel(PythonModel):
    def load_context(self, context) -> None:
        import ali_dist
        from ali_dist.tracking import MODEL_ARTIFACT
        self.model = ali_dist.load(context.artifacts[MODEL_ARTIFACT])

    # np.ndarray: MLflow validates the input against the logged signature, not the hint
    def predict(self, context, model_input: np.ndarray, params=None) -> dict:
        import torch
        y = None
        if isinstance(model_input, dict):     # a conditional model's named inputs
            y = torch.as_tensor(np.asarray(model_input["y"], dtype=np.float32))
            model_input = model_input["x"] if "x" in model_input else model_input["z"]
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        if getattr(self.model, "encoder", None) is None:
            return {"x": self.model.decode(x, y).cpu().numpy()}
        z = self.model.encode(x, y, sample=False)
        # HALI decodes z2 through p(z1 | z2): its mean, so that predict is deterministic
        mean = {"sample": False} if getattr(self.model, "is_hierarchical", False) else {}
        return {"z": z.cpu().numpy(),
                "reconstruction": self.model.decode(z, y, **mean).cpu().numpy()}


mlflow.models.set_model(ALIModel())
