"""torch.fx lowering shared by the fake-quant (calib.qnet) and integer (integer.rtn) builders."""
