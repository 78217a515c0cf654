from mest import Mest
from mest.predictors import PredictorBase
from mest.api import Response

import joblib # for deserialization saved models 


class MyPredictor(PredictorBase):
    """
    BasePredictor has a constructor that accepts BaseModel
    """
    def __init__(self):
        self.model = joblib.load('./models/logistic_regression.pkl')
    
    def pre_process(self, input_data, req):
        return input_data['features']

    def infer(self, processed_data):
        return self.model.predict_proba(processed_data)[0]
    
    def post_process(self, prediction, req):
        return {'probability': prediction}

app = Mest()
app.add_inference_handler(MyPredictor(), '/api/v1/predict')
app.run()
